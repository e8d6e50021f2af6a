"""Per-layer diagnostics shared by the rules: cosine and angle between two updates of the same layer."""

from collections.abc import Mapping

import jax
import jax.numpy as jnp

_TINY = 1e-30


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
  """Cosine similarity of two arrays of the same shape, flattened; 0 when either is all zeros. -> []."""
  a, b = a.ravel(), b.ravel()
  return jnp.vdot(a, b) / jnp.maximum(jnp.linalg.norm(a) * jnp.linalg.norm(b), _TINY)


def angle_degrees(a: jax.Array, b: jax.Array) -> jax.Array:
  """Angle between two arrays seen as vectors, in degrees (90 when either is zero). -> []."""
  return jnp.degrees(jnp.arccos(jnp.clip(cosine(a, b), -1.0, 1.0)))


def per_layer(fn, a: Mapping, b: Mapping, layers, prefix: str, leaf: str = "kernel") -> dict:
  """{f"{prefix}_{layer}": fn(a[layer][leaf], b[layer][leaf])} for each layer present in both."""
  return {f"{prefix}_{layer}": fn(a[layer][leaf], b[layer][leaf]) for layer in layers if layer in a and layer in b}


def conv_and_fc_layers(params: Mapping) -> tuple[str, ...]:
  """Names of the conv and dense layers of the CNN's params, in network order."""
  return tuple(k for k in ("conv1", "conv2", "conv3", "fc1", "fc2") if k in params)
