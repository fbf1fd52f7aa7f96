"""One-to-one matching of predictions to a padded set of targets, on device under jit and vmap:
optax's Hungarian algorithm, no host callback and no scipy, one image at a time only by vmap."""
import jax.numpy as jnp
import optax


def match(cost, valid):
  """The query matched to each target: cost (Q, M) of query q for target m, valid (M,) marks the
  real targets among the padding (Q >= M). Returns (M,) int32; a padded target's entry is a query
  no real target has, or any query, and is to be ignored.

  A padded column costs 0 for every query, so it changes no total: the real columns get the
  assignment of least total cost among them alone (scipy's linear_sum_assignment on the real
  columns gives the same total).
  """
  cost = jnp.where(valid[None, :], cost, 0.0).astype(jnp.float32)
  cost = jnp.nan_to_num(cost, nan=1e6, posinf=1e6, neginf=-1e6)  # a diverging model must not hang it
  queries, targets = optax.assignment.hungarian_algorithm(cost)
  return jnp.zeros(cost.shape[1], jnp.int32).at[targets].set(queries.astype(jnp.int32))


def total_cost(cost, valid, matched):
  """The summed cost of the real targets' matches (for tests and logs)."""
  return jnp.sum(jnp.where(valid, cost[matched, jnp.arange(cost.shape[1])], 0.0))
