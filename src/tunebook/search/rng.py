"""A tiny, frozen, deterministic random number generator.

Studies must reproduce bit for bit months or years later, so anything that decides *which*
trials a study runs cannot depend on the stream of NumPy's generators (whose algorithms and
derived-value methods may change between releases) nor on Python's :func:`hash` (randomised per
process). This module pins both pieces in plain Python:

* :func:`derive_seed` turns a tuple of ints and strings (``("halton", seed, dim)``) into a
  63-bit seed with BLAKE2b over an unambiguous, length-prefixed encoding of the parts.
* :class:`SplitMix64` is Steele, Lea & Flood's SplitMix64 (the generator Java's
  ``SplittableRandom`` and the seeding of xoshiro use), implemented with Python ints masked to
  64 bits, plus a few derived draws (:meth:`~SplitMix64.uniform`,
  :meth:`~SplitMix64.randbelow`, :meth:`~SplitMix64.permutation`) whose algorithms are fixed
  here and covered by golden-value tests.

Nothing here is cryptographically secure, and nothing needs to be: the goal is a stable, well
mixed stream.
"""

from __future__ import annotations

import hashlib
import operator

__all__ = ["SplitMix64", "derive_seed"]

_MASK64 = (1 << 64) - 1
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_PERSON = b"tunebook.seed.v1"  # BLAKE2b personalisation (at most 16 bytes); bump on any change


def _encode_part(part: int | str) -> bytes:
    """Encode one part as ``tag + 8-byte big-endian length + payload``.

    Integers (including NumPy integer scalars, via :func:`operator.index`) are encoded as their
    signed decimal text, strings as UTF-8 (lone surrogates passed through). The length prefix
    makes the concatenation of encodings unambiguous, and the tag keeps ``1`` and ``"1"``
    apart.
    """
    if isinstance(part, str):
        tag, payload = b"s", part.encode("utf-8", "surrogatepass")
    elif isinstance(part, bool):
        raise TypeError("derive_seed parts must be int or str, not bool")
    else:
        try:
            value = operator.index(part)
        except TypeError:
            raise TypeError(
                f"derive_seed parts must be int or str, not {type(part).__name__}"
            ) from None
        tag, payload = b"i", str(value).encode("ascii")
    return tag + len(payload).to_bytes(8, "big") + payload


def derive_seed(*parts: int | str) -> int:
    """Derive a stable 63-bit non-negative seed from ints and strings.

    The result depends only on the values and order of ``parts`` (never on the process, the
    platform, the Python or the NumPy version): the parts are encoded without ambiguity (type
    tag, length, payload) and hashed with BLAKE2b (8-byte digest, personalised), and the top
    63 bits are returned.

    Args:
        *parts: ints (NumPy integer scalars are accepted and treated as the equal Python int)
            and strings. ``bool`` is rejected so that ``True`` and ``1`` cannot be confused.

    Returns:
        An int in ``[0, 2**63)``.

    Raises:
        TypeError: if a part is neither an int nor a str.
    """
    digest = hashlib.blake2b(digest_size=8, person=_PERSON)
    digest.update(len(parts).to_bytes(8, "big"))
    for part in parts:
        digest.update(_encode_part(part))
    return int.from_bytes(digest.digest(), "big") >> 1


class SplitMix64:
    """SplitMix64 pseudo-random generator with a few frozen derived draws.

    The state is a 64-bit counter advanced by the golden-ratio increment; each output is the
    counter passed through a fixed bijective mixer. The stream for a given seed never changes.

    Args:
        seed: any int; it is reduced modulo ``2**64`` (so ``-1`` and ``2**64 - 1`` give the
            same stream).
    """

    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        """Start the stream at ``seed`` modulo ``2**64``."""
        self._state = operator.index(seed) & _MASK64

    def next_u64(self) -> int:
        """Return the next raw output, an int in ``[0, 2**64)``."""
        self._state = (self._state + _GOLDEN_GAMMA) & _MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
        z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
        return z ^ (z >> 31)

    def uniform(self) -> float:
        """Return a float in ``[0, 1)``: the top 53 bits of one output, times ``2**-53``."""
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def randbelow(self, n: int) -> int:
        """Return an int uniformly distributed in ``[0, n)``, without modulo bias.

        Takes the top ``(n - 1).bit_length()`` bits of successive outputs and rejects values
        ``>= n`` (at most half of the draws are rejected on average). ``n == 1`` consumes no
        output.

        Args:
            n: the exclusive upper bound, ``1 <= n <= 2**64``.

        Raises:
            ValueError: if ``n`` is out of range.
        """
        n = operator.index(n)
        if not 1 <= n <= 1 << 64:
            raise ValueError(f"randbelow needs 1 <= n <= 2**64, got {n}")
        bits = (n - 1).bit_length()
        if bits == 0:
            return 0
        shift = 64 - bits
        while True:
            r = self.next_u64() >> shift
            if r < n:
                return r

    def permutation(self, n: int) -> list[int]:
        """Return a uniformly random permutation of ``range(n)``.

        Fisher–Yates: for ``i`` from ``n - 1`` down to ``1``, swap position ``i`` with
        position ``randbelow(i + 1)``.

        Args:
            n: the length, ``n >= 0``.

        Raises:
            ValueError: if ``n`` is negative.
        """
        n = operator.index(n)
        if n < 0:
            raise ValueError(f"permutation needs n >= 0, got {n}")
        items = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.randbelow(i + 1)
            items[i], items[j] = items[j], items[i]
        return items
