"""The one exception for mistakes a user can fix: `main` prints its sentence and exits non-zero."""


class UserError(Exception):
  """Bad input (config, data, devices, workdir, checkpoint), explained in one sentence."""
