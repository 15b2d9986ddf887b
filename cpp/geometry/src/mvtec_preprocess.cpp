// MVTec 3D-AD preprocessing steps 2-3 (spec §4.2): the seeded splitmix64 RANSAC plane fit and the
// exact-predicate DBSCAN, bit-equal to align3d_rt/data/plane_ransac.py and dbscan_grid.py.
// Built with -ffp-contract=off: every f64 operation below is a separate IEEE operation, in the
// order written (the order the spec states).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "align3d/geometry.hpp"

namespace align3d {
namespace {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

struct Plane {
  std::array<double, 4> abc_d{0.0, 0.0, 0.0, 0.0};
  bool ok = false;
};

// Least-squares plane of pts[idx[0..n)] (spec §4.2 step 2 "plane from points").
template <typename IndexAt>
Plane plane_from_points(const double* pts, std::size_t n, IndexAt index_at) {
  double sx = 0.0, sy = 0.0, sz = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double* p = pts + 3 * index_at(i);
    sx = sx + p[0];
    sy = sy + p[1];
    sz = sz + p[2];
  }
  const double dn = static_cast<double>(n);
  const double cx = sx / dn, cy = sy / dn, cz = sz / dn;
  double xx = 0.0, xy = 0.0, xz = 0.0, yy = 0.0, yz = 0.0, zz = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double* p = pts + 3 * index_at(i);
    const double rx = p[0] - cx, ry = p[1] - cy, rz = p[2] - cz;
    xx = xx + rx * rx;
    xy = xy + rx * ry;
    xz = xz + rx * rz;
    yy = yy + ry * ry;
    yz = yz + ry * rz;
    zz = zz + rz * rz;
  }
  const double det_x = yy * zz - yz * yz, det_y = xx * zz - xz * xz, det_z = xx * yy - xy * xy;
  double a, b, c;
  if (det_x > det_y && det_x > det_z) {
    a = det_x;
    b = xz * yz - xy * zz;
    c = xy * yz - xz * yy;
  } else if (det_y > det_z) {
    a = xz * yz - xy * zz;
    b = det_y;
    c = xy * xz - yz * xx;
  } else {
    a = xy * yz - xz * yy;
    b = xy * xz - yz * xx;
    c = det_z;
  }
  const double norm = std::sqrt((a * a + b * b) + c * c);
  Plane out;
  if (!std::isfinite(norm) || !(norm > 0.0)) return out;
  a = a / norm;
  b = b / norm;
  c = c / norm;
  out.abc_d = {a, b, c, -((a * cx + b * cy) + c * cz)};
  out.ok = true;
  return out;
}

double plane_distance(const std::array<double, 4>& pl, const double* p) {
  return std::fabs(((pl[0] * p[0] + pl[1] * p[1]) + pl[2] * p[2]) + pl[3]);
}

// ---- DBSCAN -------------------------------------------------------------------------------------

struct Key {
  std::int64_t x, y, z;
  bool operator==(const Key& o) const { return x == o.x && y == o.y && z == o.z; }
};
struct KeyHash {
  std::size_t operator()(const Key& k) const {
    std::uint64_t h = static_cast<std::uint64_t>(k.x) * 0x9E3779B97F4A7C15ULL;
    h ^= static_cast<std::uint64_t>(k.y) * 0xC2B2AE3D27D4EB4FULL + (h << 6) + (h >> 2);
    h ^= static_cast<std::uint64_t>(k.z) * 0x165667B19E3779F9ULL + (h << 6) + (h >> 2);
    return static_cast<std::size_t>(h);
  }
};

bool within(const double* p, const double* q, double eps2) {
  const double dx = p[0] - q[0], dy = p[1] - q[1], dz = p[2] - q[2];
  return ((dx * dx + dy * dy) + dz * dz) <= eps2;
}

struct Voxels {
  // Points bucketed by voxels of side eps/sqrt(3)*(1-1e-9): two points of one voxel are neighbours,
  // and every neighbour of a point lies within +-2 voxels per axis.
  std::vector<Key> keys;                // per voxel
  std::vector<std::size_t> begin, end;  // member range in `order`
  std::vector<std::size_t> order;       // point indices grouped by voxel, ascending inside a voxel
  std::vector<std::size_t> voxel_of;    // per point
  std::unordered_map<Key, std::size_t, KeyHash> lookup;

  Voxels(const std::vector<double>& pts, double eps) {
    const std::size_t n = pts.size() / 3;
    const double side = eps / std::sqrt(3.0) * (1.0 - 1e-9);
    voxel_of.resize(n);
    std::vector<std::size_t> count;
    for (std::size_t i = 0; i < n; ++i) {
      for (int a = 0; a < 3; ++a)
        if (!(std::fabs(pts[3 * i + a] / side) < 4.0e15))
          throw std::invalid_argument("dbscan_labels: coordinates must be finite and metre-scale");
      const Key k{static_cast<std::int64_t>(std::floor(pts[3 * i] / side)),
                  static_cast<std::int64_t>(std::floor(pts[3 * i + 1] / side)),
                  static_cast<std::int64_t>(std::floor(pts[3 * i + 2] / side))};
      auto it = lookup.find(k);
      if (it == lookup.end()) {
        it = lookup.emplace(k, keys.size()).first;
        keys.push_back(k);
        count.push_back(0);
      }
      voxel_of[i] = it->second;
      ++count[it->second];
    }
    begin.resize(keys.size());
    end.resize(keys.size());
    std::size_t at = 0;
    for (std::size_t v = 0; v < keys.size(); ++v) {
      begin[v] = end[v] = at;
      at += count[v];
    }
    order.resize(n);
    for (std::size_t i = 0; i < n; ++i) order[end[voxel_of[i]]++] = i;
  }

  std::size_t size(std::size_t v) const { return end[v] - begin[v]; }

  template <typename F>
  void for_neighbour_voxels(std::size_t v, F f) const {  // the 125 voxels within +-2 (v included)
    const Key& k = keys[v];
    for (std::int64_t i = -2; i <= 2; ++i)
      for (std::int64_t j = -2; j <= 2; ++j)
        for (std::int64_t l = -2; l <= 2; ++l) {
          const auto it = lookup.find(Key{k.x + i, k.y + j, k.z + l});
          if (it != lookup.end()) f(it->second);
        }
  }
};

std::size_t find_root(std::vector<std::size_t>& parent, std::size_t x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]];
    x = parent[x];
  }
  return x;
}

}  // namespace

std::uint64_t splitmix64_next(std::uint64_t& state) {
  state += kGolden;
  std::uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

bool fit_plane_ransac(const double* pts, std::size_t m, double threshold, int sample_n, int iterations,
                      std::uint64_t seed, std::array<double, 4>& plane) {
  if (sample_n < 3 || m < static_cast<std::size_t>(sample_n) || iterations < 1) return false;
  const std::size_t n = static_cast<std::size_t>(sample_n);
  std::vector<std::size_t> perm(m);
  std::iota(perm.begin(), perm.end(), std::size_t{0});
  std::vector<std::size_t> swapped(n);
  std::uint64_t state = seed;
  long long best_count = -1;
  Plane best;
  for (int t = 0; t < iterations; ++t) {
    for (std::size_t i = 0; i < n; ++i) {  // partial Fisher-Yates on the identity permutation
      const std::size_t j = i + static_cast<std::size_t>(splitmix64_next(state) % static_cast<std::uint64_t>(m - i));
      std::swap(perm[i], perm[j]);
      swapped[i] = j;
    }
    const Plane hyp = plane_from_points(pts, n, [&](std::size_t i) { return perm[i]; });
    for (std::size_t i = n; i-- > 0;) std::swap(perm[i], perm[swapped[i]]);  // back to the identity
    if (!hyp.ok) continue;
    long long count = 0;
    for (std::size_t k = 0; k < m; ++k) count += plane_distance(hyp.abc_d, pts + 3 * k) < threshold ? 1 : 0;
    if (count > best_count) {
      best_count = count;
      best = hyp;
    }
  }
  if (!best.ok) return false;
  std::vector<std::size_t> inliers;
  for (std::size_t k = 0; k < m; ++k)
    if (plane_distance(best.abc_d, pts + 3 * k) < threshold) inliers.push_back(k);
  plane = best.abc_d;
  if (inliers.size() >= 3) {
    const Plane refit = plane_from_points(pts, inliers.size(), [&](std::size_t i) { return inliers[i]; });
    if (refit.ok) plane = refit.abc_d;
  }
  return true;
}

std::vector<std::int64_t> dbscan_labels(const double* xyz, std::size_t n, double eps, int min_points) {
  std::vector<std::int64_t> labels(n, -1);
  if (n == 0) return labels;
  const std::vector<double> pts(xyz, xyz + 3 * n);
  const double eps2 = eps * eps;
  const Voxels vox(pts, eps);
  const std::size_t nv = vox.keys.size();
  const std::size_t need = static_cast<std::size_t>(std::max(min_points, 0));
  // 1. core points (count includes the point itself)
  std::vector<std::uint8_t> core(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t v = vox.voxel_of[i];
    if (vox.size(v) >= need) {
      core[i] = 1;
      continue;
    }
    std::size_t count = 0;
    vox.for_neighbour_voxels(v, [&](std::size_t u) {
      for (std::size_t a = vox.begin[u]; a < vox.end[u] && count < need; ++a)
        if (within(&pts[3 * i], &pts[3 * vox.order[a]], eps2)) ++count;
    });
    core[i] = count >= need ? 1 : 0;
  }
  // 2. components of core points: one voxel's core points are connected; neighbouring voxels are
  //    joined when any of their core points are neighbours.
  std::vector<std::size_t> parent(nv);
  std::iota(parent.begin(), parent.end(), std::size_t{0});
  std::vector<std::vector<std::size_t>> core_of(nv);
  for (std::size_t a = 0; a < n; ++a) {
    const std::size_t i = vox.order[a];
    if (core[i]) core_of[vox.voxel_of[i]].push_back(i);
  }
  for (std::size_t v = 0; v < nv; ++v) {
    if (core_of[v].empty()) continue;
    vox.for_neighbour_voxels(v, [&](std::size_t u) {
      if (u <= v || core_of[u].empty()) return;
      if (find_root(parent, u) == find_root(parent, v)) return;
      for (std::size_t p : core_of[v])
        for (std::size_t q : core_of[u])
          if (within(&pts[3 * p], &pts[3 * q], eps2)) {
            const std::size_t ru = find_root(parent, u), rv = find_root(parent, v);
            parent[std::max(ru, rv)] = std::min(ru, rv);
            return;
          }
    });
  }
  // 3. clusters numbered by their first core point in point order
  std::vector<std::int64_t> cluster_of_root(nv, -1);
  std::int64_t clusters = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!core[i]) continue;
    const std::size_t r = find_root(parent, vox.voxel_of[i]);
    if (cluster_of_root[r] < 0) cluster_of_root[r] = clusters++;
    labels[i] = cluster_of_root[r];
  }
  // 4. a non-core point joins the lowest-numbered cluster with a core point within eps
  for (std::size_t i = 0; i < n; ++i) {
    if (core[i]) continue;
    std::int64_t best = -1;
    vox.for_neighbour_voxels(vox.voxel_of[i], [&](std::size_t u) {
      for (std::size_t q : core_of[u])
        if (within(&pts[3 * i], &pts[3 * q], eps2) && (best < 0 || labels[q] < best)) best = labels[q];
    });
    labels[i] = best;
  }
  return labels;
}

std::string mvtec_remove_background(const float* grid, std::uint8_t* valid, int h, int w) {
  const std::size_t cells = static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
  for (std::size_t k = 0; k < cells; ++k)
    if (valid[k])
      for (int a = 0; a < 3; ++a)
        if (std::fabs(static_cast<double>(grid[3 * k + a])) > kMvtecMaxCoordinate)
          return "xyz values beyond +-1000 m: not an organized scan in metres";
  // step 1-2: background plane fitted on the border band
  const std::vector<double> border = grid_border_points(grid, valid, h, w);
  std::array<double, 4> plane{};
  if (fit_plane_ransac(border.data(), border.size() / 3, kPlaneFitThreshold, kPlaneRansacN, kPlaneIterations,
                       kPlaneSeed, plane))
    grid_remove_plane_cells(grid, valid, h, w, plane, kPlaneRemoveDistance);
  // step 3: largest DBSCAN cluster
  std::vector<double> pts;
  std::vector<std::size_t> cell;
  for (std::size_t k = 0; k < cells; ++k) {
    if (!valid[k]) continue;
    for (int a = 0; a < 3; ++a) pts.push_back(static_cast<double>(grid[3 * k + a]));
    cell.push_back(k);
  }
  const std::vector<std::int64_t> labels = dbscan_labels(pts.data(), cell.size(), kDbscanEps, kDbscanMinPoints);
  std::int64_t top = -1;
  for (std::int64_t l : labels) top = std::max(top, l);
  std::fill(valid, valid + cells, std::uint8_t{0});
  if (top < 0) return "no object left after background-plane removal and DBSCAN";
  std::vector<std::size_t> sizes(static_cast<std::size_t>(top) + 1, 0);
  for (std::int64_t l : labels)
    if (l >= 0) ++sizes[static_cast<std::size_t>(l)];
  const std::int64_t keep = std::max_element(sizes.begin(), sizes.end()) - sizes.begin();  // first maximum
  for (std::size_t i = 0; i < cell.size(); ++i) valid[cell[i]] = labels[i] == keep ? 1 : 0;
  return "";
}

}  // namespace align3d
