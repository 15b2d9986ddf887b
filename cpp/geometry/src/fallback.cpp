// Never-visible fallback (spec §6), as align3d_rt/scoring.py:apply_visibility_fallback.
#include <cstddef>
#include <vector>

#include "align3d/geometry.hpp"

namespace align3d {

void apply_visibility_fallback(std::uint8_t* visible, int views, std::size_t n) {
  std::vector<std::uint8_t> seen(n, 0);
  std::size_t seen_count = 0;
  for (std::size_t i = 0; i < n; ++i) {
    for (int v = 0; v < views; ++v)
      if (visible[static_cast<std::size_t>(v) * n + i]) {
        seen[i] = 1;
        break;
      }
    seen_count += seen[i];
  }
  if (seen_count == 0 || seen_count == n) return;
  // Nearest donor at or below / above each index (n = none). Donors keep their flags, so copying
  // in place reads original flags only.
  const std::size_t none = n;
  std::vector<std::size_t> above(n, none);
  for (std::size_t i = n, next = none; i-- > 0;) {
    above[i] = next;
    if (seen[i]) next = i;
  }
  std::size_t below = none;
  for (std::size_t i = 0; i < n; ++i) {
    if (seen[i]) {
      below = i;
      continue;
    }
    const std::size_t up = above[i];
    const bool use_below = below != none && (up == none || i - below <= up - i);
    const std::size_t src = use_below ? below : up;
    for (int v = 0; v < views; ++v) {
      const std::size_t row = static_cast<std::size_t>(v) * n;
      visible[row + i] = visible[row + src];
    }
  }
}

}  // namespace align3d
