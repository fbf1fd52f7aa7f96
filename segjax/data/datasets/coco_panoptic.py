"""COCO panoptic 2017 read from its official files in tfds' manual_dir: 80 thing and 53 stuff classes."""
import io
import os

import numpy as np
import tensorflow_datasets as tfds

from segjax.data import dataset
from segjax.errors import UserError

# The 133 panoptic categories as (COCO id, name, colour), by ascending id: a class index is a position
# in THINGS + STUFF. Hard-coded so the descriptor exists before any data; the builder checks each
# JSON against them. Colours are panopticapi's panoptic_coco_categories.json.
THINGS = (
    (1, "person", (220, 20, 60)), (2, "bicycle", (119, 11, 32)), (3, "car", (0, 0, 142)),
    (4, "motorcycle", (0, 0, 230)), (5, "airplane", (106, 0, 228)), (6, "bus", (0, 60, 100)),
    (7, "train", (0, 80, 100)), (8, "truck", (0, 0, 70)), (9, "boat", (0, 0, 192)),
    (10, "traffic light", (250, 170, 30)), (11, "fire hydrant", (100, 170, 30)),
    (13, "stop sign", (220, 220, 0)), (14, "parking meter", (175, 116, 175)), (15, "bench", (250, 0, 30)),
    (16, "bird", (165, 42, 42)), (17, "cat", (255, 77, 255)), (18, "dog", (0, 226, 252)),
    (19, "horse", (182, 182, 255)), (20, "sheep", (0, 82, 0)), (21, "cow", (120, 166, 157)),
    (22, "elephant", (110, 76, 0)), (23, "bear", (174, 57, 255)), (24, "zebra", (199, 100, 0)),
    (25, "giraffe", (72, 0, 118)), (27, "backpack", (255, 179, 240)), (28, "umbrella", (0, 125, 92)),
    (31, "handbag", (209, 0, 151)), (32, "tie", (188, 208, 182)), (33, "suitcase", (0, 220, 176)),
    (34, "frisbee", (255, 99, 164)), (35, "skis", (92, 0, 73)), (36, "snowboard", (133, 129, 255)),
    (37, "sports ball", (78, 180, 255)), (38, "kite", (0, 228, 0)), (39, "baseball bat", (174, 255, 243)),
    (40, "baseball glove", (45, 89, 255)), (41, "skateboard", (134, 134, 103)),
    (42, "surfboard", (145, 148, 174)), (43, "tennis racket", (255, 208, 186)),
    (44, "bottle", (197, 226, 255)), (46, "wine glass", (171, 134, 1)), (47, "cup", (109, 63, 54)),
    (48, "fork", (207, 138, 255)), (49, "knife", (151, 0, 95)), (50, "spoon", (9, 80, 61)),
    (51, "bowl", (84, 105, 51)), (52, "banana", (74, 65, 105)), (53, "apple", (166, 196, 102)),
    (54, "sandwich", (208, 195, 210)), (55, "orange", (255, 109, 65)), (56, "broccoli", (0, 143, 149)),
    (57, "carrot", (179, 0, 194)), (58, "hot dog", (209, 99, 106)), (59, "pizza", (5, 121, 0)),
    (60, "donut", (227, 255, 205)), (61, "cake", (147, 186, 208)), (62, "chair", (153, 69, 1)),
    (63, "couch", (3, 95, 161)), (64, "potted plant", (163, 255, 0)), (65, "bed", (119, 0, 170)),
    (67, "dining table", (0, 182, 199)), (70, "toilet", (0, 165, 120)), (72, "tv", (183, 130, 88)),
    (73, "laptop", (95, 32, 0)), (74, "mouse", (130, 114, 135)), (75, "remote", (110, 129, 133)),
    (76, "keyboard", (166, 74, 118)), (77, "cell phone", (219, 142, 185)), (78, "microwave", (79, 210, 114)),
    (79, "oven", (178, 90, 62)), (80, "toaster", (65, 70, 15)), (81, "sink", (127, 167, 115)),
    (82, "refrigerator", (59, 105, 106)), (84, "book", (142, 108, 45)), (85, "clock", (196, 172, 0)),
    (86, "vase", (95, 54, 80)), (87, "scissors", (128, 76, 255)), (88, "teddy bear", (201, 57, 1)),
    (89, "hair drier", (246, 0, 122)), (90, "toothbrush", (191, 162, 208)),
)
STUFF = (
    (92, "banner", (255, 255, 128)), (93, "blanket", (147, 211, 203)), (95, "bridge", (150, 100, 100)),
    (100, "cardboard", (168, 171, 172)), (107, "counter", (146, 112, 198)), (109, "curtain", (210, 170, 100)),
    (112, "door-stuff", (92, 136, 89)), (118, "floor-wood", (218, 88, 184)), (119, "flower", (241, 129, 0)),
    (122, "fruit", (217, 17, 255)), (125, "gravel", (124, 74, 181)), (128, "house", (70, 70, 70)),
    (130, "light", (255, 228, 255)), (133, "mirror-stuff", (154, 208, 0)), (138, "net", (193, 0, 92)),
    (141, "pillow", (76, 91, 113)), (144, "platform", (255, 180, 195)),
    (145, "playingfield", (106, 154, 176)), (147, "railroad", (230, 150, 140)),
    (148, "river", (60, 143, 255)), (149, "road", (128, 64, 128)), (151, "roof", (92, 82, 55)),
    (154, "sand", (254, 212, 124)), (155, "sea", (73, 77, 174)), (156, "shelf", (255, 160, 98)),
    (159, "snow", (255, 255, 255)), (161, "stairs", (104, 84, 109)), (166, "tent", (169, 164, 131)),
    (168, "towel", (225, 199, 255)), (171, "wall-brick", (137, 54, 74)), (175, "wall-stone", (135, 158, 223)),
    (176, "wall-tile", (7, 246, 231)), (177, "wall-wood", (107, 255, 200)),
    (178, "water-other", (58, 41, 149)), (180, "window-blind", (183, 121, 142)),
    (181, "window-other", (255, 73, 97)), (184, "tree-merged", (107, 142, 35)),
    (185, "fence-merged", (190, 153, 153)), (186, "ceiling-merged", (146, 139, 141)),
    (187, "sky-other-merged", (70, 130, 180)), (188, "cabinet-merged", (134, 199, 156)),
    (189, "table-merged", (209, 226, 140)), (190, "floor-other-merged", (96, 36, 108)),
    (191, "pavement-merged", (96, 96, 96)), (192, "mountain-merged", (64, 170, 64)),
    (193, "grass-merged", (152, 251, 152)), (194, "dirt-merged", (208, 229, 228)),
    (195, "paper-merged", (206, 186, 171)), (196, "food-other-merged", (152, 161, 64)),
    (197, "building-other-merged", (116, 112, 0)), (198, "rock-merged", (0, 114, 143)),
    (199, "wall-other-merged", (102, 102, 156)), (200, "rug-merged", (250, 141, 255)),
)

CATEGORIES = THINGS + STUFF
CLASS_NAMES = tuple(name for _, name, _ in CATEGORIES)

DESCRIPTOR = dataset.register(dataset.Descriptor(
    name="coco_panoptic", builder="segjax_coco_panoptic", class_names=CLASS_NAMES,
    thing_classes=tuple(range(len(THINGS))), crop_size=(640, 640), eval_size=(640, 640),  # longer side <= 640
    ignore_label=255, label_divisor=1000, colormap=tuple(colour for _, _, colour in CATEGORIES),
    official_ids=tuple(i for i, _, _ in CATEGORIES)))

_SPLITS = {"train": "train2017", "validation": "val2017"}
_VOID = 0  # the segment id of unlabelled pixels


class SegjaxCocoPanoptic(tfds.core.GeneratorBasedBuilder):
  """COCO panoptic 2017 with contiguous class indices; crowd thing pixels keep their class, instance 0."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "train2017 and val2017 from the official panoptic annotations."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  From https://cocodataset.org/#download unpack into manual_dir, keeping these paths:
    train2017/*.jpg and val2017/*.jpg (train2017.zip, val2017.zip)
    annotations/panoptic_train2017.json and annotations/panoptic_val2017.json
      (panoptic_annotations_trainval2017.zip)
    annotations/panoptic_train2017/*.png and annotations/panoptic_val2017/*.png
      (the zips of the same names inside annotations/)
  """

  def _info(self):
    return self.dataset_info_from_configs(
        features=dataset.features("jpeg"),
        description=__doc__,
        homepage="https://cocodataset.org/#panoptic-2017",
        metadata=dataset.metadata(CLASS_NAMES, DESCRIPTOR.thing_classes),
    )

  def _split_generators(self, dl_manager):
    root = dataset.manual_root(dl_manager, "train2017/, val2017/ and annotations/ of COCO")
    paths = {}
    for split, folder in _SPLITS.items():  # every file that must exist, before anything is written
      json_path = os.path.join(root, "annotations", f"panoptic_{folder}.json")
      png_dir = os.path.join(root, "annotations", f"panoptic_{folder}")
      image_dir = os.path.join(root, folder)
      if not os.path.isfile(json_path):
        raise UserError(f"Missing '{json_path}': unpack panoptic_annotations_trainval2017.zip into "
                        f"'{root}' so that annotations/panoptic_{folder}.json is there.")
      for path, source in ((png_dir, f"annotations/panoptic_{folder}.zip"), (image_dir, f"{folder}.zip")):
        if not os.path.isdir(path):
          raise UserError(f"Missing folder '{path}': unpack {source} from COCO there.")
      paths[split] = (json_path, png_dir, image_dir)
    return {split: self._generate_examples(*p) for split, p in paths.items()}

  def _generate_examples(self, json_path, png_dir, image_dir):
    data = dataset.read_json(json_path)  # read here, so only one split's JSON is in memory
    try:
      categories, images, annotations = data["categories"], data["images"], data["annotations"]
      class_of = _class_table(categories, json_path)
      images = {image["id"]: image for image in images}
    except (KeyError, TypeError) as e:
      raise UserError(f"'{json_path}' is not a COCO panoptic JSON (no {e}); use the official file.") from e
    for annotation in annotations:
      image = images.get(annotation["image_id"])
      if image is None:
        raise UserError(f"Annotation '{annotation['file_name']}' in '{json_path}' names image id "
                        f"{annotation['image_id']}, which its 'images' list lacks; use the official file.")
      yield image["id"], _example(image, annotation, class_of, json_path, png_dir, image_dir)


def _class_table(categories, json_path):
  """COCO category id -> class index, after checking the JSON has exactly the official categories."""
  found = sorted((c["id"], c["name"], bool(c["isthing"])) for c in categories)
  official = [(i, name, n < len(THINGS)) for n, (i, name, _) in enumerate(CATEGORIES)]
  if found != official:
    diff = next((f"{a} instead of {b}" for a, b in zip(found, official) if a != b),
                f"{len(found)} categories instead of {len(official)}")
    raise UserError(f"The categories of '{json_path}' are not the 133 official COCO panoptic ones ({diff} "
                    f"as (id, name, isthing)); use the official 2017 panoptic annotations.")
  return {i: index for index, (i, _, _) in enumerate(CATEGORIES)}


def _example(image, annotation, class_of, json_path, png_dir, image_dir):
  """The features of one image: its JPEG as is, its PNG of segment ids turned into class and instance."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image_path = os.path.join(image_dir, image["file_name"])
  png_path = os.path.join(png_dir, annotation["file_name"])
  try:
    with open(image_path, "rb") as f:
      jpeg = f.read()
  except FileNotFoundError as e:
    raise UserError(f"Missing image '{image_path}' listed in '{json_path}'; unpack the COCO images "
                    f"into '{image_dir}'.") from e
  rgb = dataset.read_png(png_path, "panoptic PNG")
  height, width = image["height"], image["width"]
  if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.shape[:2] != (height, width):
    raise UserError(f"'{png_path}' has shape {rgb.shape}, not the RGB {height}x{width} that '{json_path}' "
                    f"gives its image; use the official panoptic PNGs.")
  with Image.open(io.BytesIO(jpeg)) as im:  # reads the header only
    if im.size != (width, height):
      raise UserError(f"'{image_path}' is {im.size[1]}x{im.size[0]}, not the {height}x{width} of "
                      f"'{json_path}'; use the official COCO 2017 images.")
  rgb = rgb[..., :3].astype(np.int64)
  ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]

  # Per segment id: its class, and its instance number (thing segments, crowd excluded, in list order).
  segment_class, segment_instance, count = {_VOID: 255}, {_VOID: 0}, 0
  for segment in annotation["segments_info"]:
    if segment["category_id"] not in class_of:
      raise UserError(f"Segment {segment['id']} of '{annotation['file_name']}' in '{json_path}' has "
                      f"category {segment['category_id']}, which is not a COCO panoptic category.")
    segment_class[segment["id"]] = class_of[segment["category_id"]]
    numbered = segment_class[segment["id"]] < len(THINGS) and not segment["iscrowd"]
    count += numbered
    segment_instance[segment["id"]] = count if numbered else 0
  present, inverse = np.unique(ids, return_inverse=True)
  unknown = [int(i) for i in present if int(i) not in segment_class]
  if unknown:
    raise UserError(f"'{png_path}' holds segment id {unknown[0]}, which the segments_info of its annotation "
                    f"in '{json_path}' lacks; the PNG and the JSON must come from the same release.")
  semantic = np.array([segment_class[int(i)] for i in present], np.uint8)[inverse].reshape(ids.shape)
  instance = np.array([segment_instance[int(i)] for i in present], np.uint16)[inverse].reshape(ids.shape)
  return {
      "image_id": image["id"],
      "file_name": os.path.splitext(image["file_name"])[0],
      "image": jpeg,
      "semantic": semantic[..., None],
      "instance": instance[..., None],
  }
