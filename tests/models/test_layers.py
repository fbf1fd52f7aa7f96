"""The shared layers that replace slow XLA paths must compute what those paths compute."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax.models.layers import DepthwiseConv, attention, gelu, resize


def test_whole_factor_upsampling_is_bilinear_with_half_pixel_centres():
  # Output r of 4 from pixel i sits at i + (r + 0.5) / 4 - 0.5: 0 and 1 become these, by hand.
  row = np.array([0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1], np.float32)
  x = jnp.asarray([[0.0, 1.0], [0.0, 1.0]])[None, :, :, None]
  np.testing.assert_allclose(resize(x, 8, 8)[0, 0, :, 0], row, atol=1e-7)
  np.testing.assert_allclose(resize(x.transpose(0, 2, 1, 3), 8, 8)[0, :, 0, 0], row, atol=1e-7)


@pytest.mark.parametrize("shape, size", [((2, 4, 6, 3), (8, 24)), ((2, 5, 7, 2), (15, 7)), ((1, 1, 1, 4), (4, 4)),
                                         ((2, 6, 4, 3), (3, 8)), ((1, 5, 5, 2), (7, 12))])
def test_resize_and_its_gradient_are_jax_image_resize(shape, size):
  x = jax.random.normal(jax.random.key(0), shape)
  ref = lambda v: jax.image.resize(v, (shape[0], *size, shape[3]), "bilinear")
  np.testing.assert_allclose(resize(x, *size), ref(x), atol=2e-6)
  cotangent = jax.random.normal(jax.random.key(1), (shape[0], *size, shape[3]))
  np.testing.assert_allclose(jax.vjp(lambda v: resize(v, *size), x)[1](cotangent)[0],
                             jax.vjp(ref, x)[1](cotangent)[0], atol=2e-6)
  tangent = jax.random.normal(jax.random.key(2), shape)
  np.testing.assert_allclose(jax.jvp(lambda v: resize(v, *size), (x,), (tangent,))[1],
                             jax.jvp(ref, (x,), (tangent,))[1], atol=2e-6)
  half = x.astype(jnp.bfloat16)
  np.testing.assert_allclose(resize(half, *size).astype(jnp.float32), ref(half).astype(jnp.float32), atol=0.05)
  assert resize(half, *size).dtype == jnp.bfloat16


def test_resize_of_integers_is_jax_image_resize():
  x = (jnp.arange(8, dtype=jnp.int32) * 10).reshape(1, 2, 4, 1)
  np.testing.assert_allclose(resize(x, 4, 8), jax.image.resize(x, (1, 4, 8, 1), "bilinear"))


@pytest.mark.parametrize("kernel", [2, 3, 4, 7])
def test_depthwise_conv_is_a_grouped_convolution_with_nn_convs_weights(kernel):
  x = jax.random.normal(jax.random.key(0), (2, 9, 6, 5))
  ours = DepthwiseConv(kernel)
  variables = ours.init(jax.random.key(1), x)
  grouped = nn.Conv(5, (kernel, kernel), padding="SAME", feature_group_count=5, use_bias=False)
  theirs = grouped.init(jax.random.key(1), x)
  np.testing.assert_array_equal(variables["params"]["kernel"], theirs["params"]["kernel"])  # checkpoints load
  np.testing.assert_allclose(ours.apply(variables, x), grouped.apply(variables, x), atol=2e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gelu_is_jax_exact_gelu_to_the_bit(dtype):
  x = jnp.concatenate([jnp.linspace(-12, 12, 4001), jnp.array([0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0])]).astype(dtype)
  np.testing.assert_array_equal(gelu(x), jax.nn.gelu(x, approximate=False))
  np.testing.assert_array_equal(jax.jit(gelu)(x), jax.jit(lambda v: jax.nn.gelu(v, approximate=False))(x))
  np.testing.assert_allclose(jax.vmap(jax.grad(gelu))(x.astype(jnp.float32)),
                             jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(x.astype(jnp.float32)),
                             rtol=1e-6, atol=1e-7)


def test_attention_and_its_gradient_are_jax_dot_product_attention():
  q, k, v = (jax.random.normal(jax.random.key(i), shape) for i, shape in
             enumerate([(2, 5, 3, 4), (2, 7, 3, 4), (2, 7, 3, 4)]))
  mask = jax.random.bernoulli(jax.random.key(3), 0.6, (2, 1, 5, 7)).at[1, 0, 2].set(False)  # a row sees nothing
  for m, scale in ((None, 1.0), (mask, 1.0), (mask, 0.5)):
    ref = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=m, scale=scale)
    np.testing.assert_allclose(attention(q, k, v, m, scale), ref(q, k, v), atol=1e-6)
    cotangent = jax.random.normal(jax.random.key(4), q.shape)
    for got, want in zip(jax.vjp(lambda *a: attention(*a, m, scale), q, k, v)[1](cotangent),
                         jax.vjp(ref, q, k, v)[1](cotangent)):
      np.testing.assert_allclose(got, want, atol=1e-5)
  half = [a.astype(jnp.bfloat16) for a in (q, k, v)]  # jax's own order there: its gradients are closer
  np.testing.assert_array_equal(attention(*half, mask, 0.5), jax.nn.dot_product_attention(*half, mask=mask, scale=0.5))
