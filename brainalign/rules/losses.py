"""Loss and accuracy shared by the rules that train a readout by gradient."""

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy. logits [B, K], labels [B] int -> []."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of argmax(logits) == labels. logits [B, K], labels [B] -> []."""
  return jnp.mean(jnp.argmax(logits, axis=-1) == labels)
