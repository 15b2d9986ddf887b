// Real3D-AD resampling to a fixed point count (spec §4.3), as align3d_rt/data/real3d.py:resample.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>
#include <stdexcept>
#include <utility>

#include "align3d/geometry.hpp"

namespace align3d {
namespace {

// Points sorted into kd-tree leaves (median splits on the widest axis); perm lists point indices
// leaf by leaf, leaf l covers perm[start[l], start[l+1]).
struct Leaves {
  std::vector<std::size_t> perm, start;
  std::vector<std::array<double, 6>> box;  // lo xyz, hi xyz
};

Leaves build_leaves(const float* xyz, std::size_t n, std::size_t leaf_size) {
  Leaves t;
  t.perm.resize(n);
  std::iota(t.perm.begin(), t.perm.end(), std::size_t{0});
  std::vector<std::pair<std::size_t, std::size_t>> stack{{0, n}};
  std::vector<std::pair<std::size_t, std::size_t>> leaves;
  while (!stack.empty()) {
    auto [s, e] = stack.back();
    stack.pop_back();
    if (e - s <= leaf_size) {
      leaves.push_back({s, e});
      continue;
    }
    double lo[3] = {1e300, 1e300, 1e300}, hi[3] = {-1e300, -1e300, -1e300};
    for (std::size_t k = s; k < e; ++k)
      for (int a = 0; a < 3; ++a) {
        lo[a] = std::min(lo[a], static_cast<double>(xyz[3 * t.perm[k] + a]));
        hi[a] = std::max(hi[a], static_cast<double>(xyz[3 * t.perm[k] + a]));
      }
    int axis = 0;
    for (int a = 1; a < 3; ++a)
      if (hi[a] - lo[a] > hi[axis] - lo[axis]) axis = a;
    const std::size_t mid = (s + e) / 2;
    std::nth_element(t.perm.begin() + static_cast<std::ptrdiff_t>(s), t.perm.begin() + static_cast<std::ptrdiff_t>(mid),
                     t.perm.begin() + static_cast<std::ptrdiff_t>(e),
                     [&](std::size_t i, std::size_t j) { return xyz[3 * i + axis] < xyz[3 * j + axis]; });
    stack.push_back({mid, e});
    stack.push_back({s, mid});
  }
  std::sort(leaves.begin(), leaves.end());
  for (const auto& [s, e] : leaves) {
    t.start.push_back(s);
    std::array<double, 6> b{1e300, 1e300, 1e300, -1e300, -1e300, -1e300};
    for (std::size_t k = s; k < e; ++k)
      for (int a = 0; a < 3; ++a) {
        b[a] = std::min(b[a], static_cast<double>(xyz[3 * t.perm[k] + a]));
        b[3 + a] = std::max(b[3 + a], static_cast<double>(xyz[3 * t.perm[k] + a]));
      }
    t.box.push_back(b);
  }
  t.start.push_back(n);
  return t;
}

inline double sq_dist(const float* xyz, std::size_t i, const double c[3]) {
  const double dx = xyz[3 * i] - c[0], dy = xyz[3 * i + 1] - c[1], dz = xyz[3 * i + 2] - c[2];
  return (dx * dx + dy * dy) + dz * dz;
}

// Squared distance from c to a leaf box: a lower bound of sq_dist for every point inside (the
// rounded differences and sums are monotonic, so the bound holds in floating point too).
inline double box_dist(const std::array<double, 6>& b, const double c[3]) {
  double g[3];
  for (int a = 0; a < 3; ++a) g[a] = c[a] < b[a] ? b[a] - c[a] : (c[a] > b[3 + a] ? c[a] - b[3 + a] : 0.0);
  return (g[0] * g[0] + g[1] * g[1]) + g[2] * g[2];
}

// k nearest neighbours of every point (itself included), ordered by (distance, index).
std::vector<std::size_t> knn(const float* xyz, std::size_t n, std::size_t k) {
  const Leaves t = build_leaves(xyz, n, 32);
  const std::size_t leaves = t.box.size();
  std::vector<std::size_t> out(n * k);
  using Entry = std::pair<double, std::size_t>;
  std::vector<std::pair<double, std::size_t>> order(leaves);
  for (std::size_t i = 0; i < n; ++i) {
    const double c[3] = {xyz[3 * i], xyz[3 * i + 1], xyz[3 * i + 2]};
    for (std::size_t l = 0; l < leaves; ++l) order[l] = {box_dist(t.box[l], c), l};
    std::sort(order.begin(), order.end());
    std::priority_queue<Entry> best;  // max-heap of the k best (distance, index)
    for (const auto& [bd, l] : order) {
      if (best.size() == k && bd > best.top().first) break;
      for (std::size_t p = t.start[l]; p < t.start[l + 1]; ++p) {
        const Entry e{sq_dist(xyz, t.perm[p], c), t.perm[p]};
        if (best.size() < k) best.push(e);
        else if (e < best.top()) {
          best.pop();
          best.push(e);
        }
      }
    }
    for (std::size_t r = k; r-- > 0;) {
      out[i * k + r] = best.top().second;
      best.pop();
    }
  }
  return out;
}

}  // namespace

std::vector<std::int64_t> farthest_point_sampling(const float* xyz, std::size_t n, std::size_t count) {
  if (count > n) throw std::invalid_argument("farthest_point_sampling: more picks than points");
  std::vector<std::int64_t> picks;
  if (count == 0) return picks;
  const Leaves t = build_leaves(xyz, n, 64);
  const std::size_t leaves = t.box.size();
  std::vector<double> dist(n, std::numeric_limits<double>::infinity());
  std::vector<double> leaf_max(leaves, std::numeric_limits<double>::infinity());
  std::vector<std::size_t> leaf_arg(leaves);
  for (std::size_t l = 0; l < leaves; ++l)
    leaf_arg[l] = *std::min_element(t.perm.begin() + static_cast<std::ptrdiff_t>(t.start[l]),
                                    t.perm.begin() + static_cast<std::ptrdiff_t>(t.start[l + 1]));
  std::size_t pick = 0;
  picks.reserve(count);
  for (std::size_t it = 0; it < count; ++it) {
    picks.push_back(static_cast<std::int64_t>(pick));
    const double c[3] = {xyz[3 * pick], xyz[3 * pick + 1], xyz[3 * pick + 2]};
    std::size_t best_leaf = 0;
    for (std::size_t l = 0; l < leaves; ++l) {
      if (box_dist(t.box[l], c) < leaf_max[l]) {  // else no point of the leaf can get closer
        double m = -1.0;
        std::size_t arg = 0;
        for (std::size_t p = t.start[l]; p < t.start[l + 1]; ++p) {
          const std::size_t i = t.perm[p];
          dist[i] = std::min(dist[i], sq_dist(xyz, i, c));
          if (dist[i] > m || (dist[i] == m && i < arg)) {
            m = dist[i];
            arg = i;
          }
        }
        leaf_max[l] = m;
        leaf_arg[l] = arg;
      }
      // argmax of dist over all points, ties to the lowest index (numpy argmax on the naive loop)
      if (leaf_max[l] > leaf_max[best_leaf] ||
          (leaf_max[l] == leaf_max[best_leaf] && leaf_arg[l] < leaf_arg[best_leaf]))
        best_leaf = l;
    }
    pick = leaf_arg[best_leaf];
  }
  return picks;
}

Cloud resample_real3d(const float* xyz, std::size_t n, std::size_t target) {
  if (n == 0) throw std::invalid_argument("resample: the cloud has no point");
  if (target == 0) throw std::invalid_argument("resample: target must be >= 1");
  Cloud out;
  if (n == target) {
    out.xyz.assign(xyz, xyz + 3 * n);
    return out;
  }
  out.xyz.reserve(3 * target);
  if (n > target) {
    for (std::int64_t i : farthest_point_sampling(xyz, n, target))
      out.xyz.insert(out.xyz.end(), xyz + 3 * i, xyz + 3 * i + 3);
    return out;
  }
  if (n == 1) {
    for (std::size_t i = 0; i < target; ++i) out.xyz.insert(out.xyz.end(), xyz, xyz + 3);
    return out;
  }
  out.xyz.assign(xyz, xyz + 3 * n);
  const std::size_t extra = target - n;
  const std::size_t passes = (extra + n - 1) / n;
  const std::size_t k = std::min(passes + 1, n);
  const std::vector<std::size_t> nbr = knn(xyz, n, k);
  std::size_t left = extra;
  for (std::size_t p = 0; p < passes; ++p) {
    const std::size_t m = std::min(left, n);
    const std::size_t col = std::min(p + 1, k - 1);
    for (std::size_t j = 0; j < m; ++j) {
      const std::size_t src = (j * n) / m, other = nbr[src * k + col];
      for (int a = 0; a < 3; ++a)
        out.xyz.push_back(static_cast<float>(
            0.5 * (static_cast<double>(xyz[3 * src + a]) + static_cast<double>(xyz[3 * other + a]))));
    }
    left -= m;
  }
  return out;
}

}  // namespace align3d
