// Point spacing, defect regions and the decision (docs/runtime-spec.md 13.3-13.5).
// Neighbour searches use an exact k-d tree over the f32 points widened to f64; every distance is
// (dx^2 + dy^2 + dz^2) in f64 with each difference in f64, as the spec fixes it.
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "align3d/decisions.hpp"
#include "align3d/inspector.hpp"
#include "decision_json.hpp"

namespace align3d {
namespace {

double dist2(const double* a, const double* b) {
  const double dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
  return dx * dx + dy * dy + dz * dz;
}

/// Static k-d tree (implicit: node = middle of its index range, split on the widest axis).
class KdTree {
 public:
  explicit KdTree(std::vector<double> pts) : p_(std::move(pts)), idx_(p_.size() / 3), axis_(idx_.size()) {
    std::iota(idx_.begin(), idx_.end(), std::size_t{0});
    build(0, idx_.size());
  }
  std::size_t size() const { return idx_.size(); }
  const double* point(std::size_t i) const { return &p_[3 * i]; }

  /// Smallest squared distance from point `self` to any other point of the tree.
  double nearest_other(std::size_t self) const {
    double best = INFINITY;
    nearest(0, idx_.size(), point(self), self, best);
    return best;
  }
  /// Calls fn(j) for every point j with dist2(q, j) <= r2.
  void within(const double* q, double r2, const std::function<void(std::size_t)>& fn) const {
    within(0, idx_.size(), q, r2, fn);
  }

 private:
  static constexpr std::size_t kLeaf = 8;
  std::vector<double> p_;
  std::vector<std::size_t> idx_;
  std::vector<unsigned char> axis_;

  void build(std::size_t lo, std::size_t hi) {
    if (hi - lo <= kLeaf) return;
    double mn[3] = {INFINITY, INFINITY, INFINITY}, mx[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (std::size_t i = lo; i < hi; ++i)
      for (int a = 0; a < 3; ++a) {
        mn[a] = std::min(mn[a], p_[3 * idx_[i] + a]);
        mx[a] = std::max(mx[a], p_[3 * idx_[i] + a]);
      }
    int axis = 0;
    for (int a = 1; a < 3; ++a)
      if (mx[a] - mn[a] > mx[axis] - mn[axis]) axis = a;
    const std::size_t mid = lo + (hi - lo) / 2;
    std::nth_element(idx_.begin() + lo, idx_.begin() + mid, idx_.begin() + hi,
                     [&](std::size_t x, std::size_t y) { return p_[3 * x + axis] < p_[3 * y + axis]; });
    axis_[mid] = static_cast<unsigned char>(axis);
    build(lo, mid);
    build(mid + 1, hi);
  }

  void nearest(std::size_t lo, std::size_t hi, const double* q, std::size_t self, double& best) const {
    if (hi - lo <= kLeaf) {
      for (std::size_t i = lo; i < hi; ++i)
        if (idx_[i] != self) best = std::min(best, dist2(q, point(idx_[i])));
      return;
    }
    const std::size_t mid = lo + (hi - lo) / 2, node = idx_[mid];
    if (node != self) best = std::min(best, dist2(q, point(node)));
    const int a = axis_[mid];
    const double diff = q[a] - point(node)[a];
    // Left holds coordinates <= the split, right >= it: a far-side point is at least |diff| away.
    if (diff < 0) {
      nearest(lo, mid, q, self, best);
      if (diff * diff < best) nearest(mid + 1, hi, q, self, best);
    } else {
      nearest(mid + 1, hi, q, self, best);
      if (diff * diff < best) nearest(lo, mid, q, self, best);
    }
  }

  void within(std::size_t lo, std::size_t hi, const double* q, double r2,
              const std::function<void(std::size_t)>& fn) const {
    if (hi - lo <= kLeaf) {
      for (std::size_t i = lo; i < hi; ++i)
        if (dist2(q, point(idx_[i])) <= r2) fn(idx_[i]);
      return;
    }
    const std::size_t mid = lo + (hi - lo) / 2, node = idx_[mid];
    if (dist2(q, point(node)) <= r2) fn(node);
    const int a = axis_[mid];
    const double diff = q[a] - point(node)[a];
    if (diff <= 0 || diff * diff <= r2) within(lo, mid, q, r2, fn);
    if (diff >= 0 || diff * diff <= r2) within(mid + 1, hi, q, r2, fn);
  }
};

std::vector<double> widen(const float* xyz, const std::vector<std::size_t>& rows) {
  std::vector<double> out(3 * rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (int a = 0; a < 3; ++a) out[3 * i + a] = static_cast<double>(xyz[3 * rows[i] + a]);
  return out;
}

struct DisjointSets {
  std::vector<std::size_t> parent;
  explicit DisjointSets(std::size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), std::size_t{0}); }
  std::size_t find(std::size_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  }
  void join(std::size_t a, std::size_t b) {
    a = find(a), b = find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  }
};

}  // namespace

double normalize_score(double x, double threshold, double lo, double hi) {
  return std::clamp(0.5 + (x - threshold) / (hi - lo), 0.0, 1.0);
}

double point_spacing(const float* xyz, std::size_t n) {
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  auto row_less = [&](std::size_t a, std::size_t b) {
    return std::lexicographical_compare(xyz + 3 * a, xyz + 3 * a + 3, xyz + 3 * b, xyz + 3 * b + 3);
  };
  auto row_equal = [&](std::size_t a, std::size_t b) { return std::equal(xyz + 3 * a, xyz + 3 * a + 3, xyz + 3 * b); };
  std::sort(order.begin(), order.end(), row_less);
  order.erase(std::unique(order.begin(), order.end(), row_equal), order.end());  // distinct locations U
  if (order.size() < 2) return 0.0;
  const KdTree tree(widen(xyz, order));
  std::vector<double> d2(tree.size());
  for (std::size_t i = 0; i < tree.size(); ++i) d2[i] = tree.nearest_other(i);
  const std::size_t m = (d2.size() - 1) / 2;  // lower median
  std::nth_element(d2.begin(), d2.begin() + m, d2.end());
  return std::sqrt(d2[m]);
}

std::vector<Region> find_regions(const float* xyz, const float* fused, std::size_t n, const RegionSettings& settings,
                                 std::vector<std::int32_t>& labels, double spacing) {
  labels.assign(n, 0);
  const double h = spacing >= 0 ? spacing : point_spacing(xyz, n);
  const double r = settings.spacing_factor * h, r2 = r * r;
  std::vector<std::size_t> hot;
  for (std::size_t i = 0; i < n; ++i)
    if (static_cast<double>(fused[i]) > settings.point_threshold) hot.push_back(i);
  std::vector<Region> regions;
  if (hot.empty()) return regions;
  // Identical hot locations are always linked (distance 0): join them first and search from one
  // representative each, so a cloud of repeated points (real3d N = 1) stays O(N log N).
  DisjointSets sets(hot.size());
  std::vector<std::size_t> order(hot.size()), reps;
  std::iota(order.begin(), order.end(), std::size_t{0});
  const auto row = [&](std::size_t k) { return xyz + 3 * hot[k]; };
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::lexicographical_compare(row(a), row(a) + 3, row(b), row(b) + 3);
  });
  for (std::size_t k = 0; k < order.size(); ++k) {
    if (k > 0 && std::equal(row(order[k]), row(order[k]) + 3, row(order[k - 1]))) sets.join(order[k], order[k - 1]);
    else
      reps.push_back(order[k]);
  }
  std::vector<std::size_t> rep_rows(reps.size());
  for (std::size_t k = 0; k < reps.size(); ++k) rep_rows[k] = hot[reps[k]];
  const KdTree tree(widen(xyz, rep_rows));
  for (std::size_t k = 0; k < reps.size(); ++k)
    tree.within(tree.point(k), r2, [&](std::size_t j) { sets.join(reps[k], reps[j]); });
  std::vector<std::vector<std::int64_t>> members(hot.size());
  for (std::size_t i = 0; i < hot.size(); ++i) members[sets.find(i)].push_back(static_cast<std::int64_t>(hot[i]));
  for (auto& idx : members) {  // hot is ascending, so each member list is too
    if (idx.empty() || static_cast<std::int64_t>(idx.size()) < settings.min_points) continue;
    Region g;
    const double count = static_cast<double>(idx.size());
    double sum[3] = {0, 0, 0}, score_sum = 0;
    g.seed_index = idx[0];
    g.bbox_min = {INFINITY, INFINITY, INFINITY};
    g.bbox_max = {-INFINITY, -INFINITY, -INFINITY};
    for (std::int64_t i : idx) {
      for (int a = 0; a < 3; ++a) {
        const double v = xyz[3 * i + a];
        sum[a] += v;
        g.bbox_min[a] = std::min(g.bbox_min[a], v);
        g.bbox_max[a] = std::max(g.bbox_max[a], v);
      }
      score_sum += static_cast<double>(fused[i]);
      if (fused[i] > fused[g.seed_index]) g.seed_index = i;
    }
    for (int a = 0; a < 3; ++a) {
      g.centroid[a] = sum[a] / count;
      g.extent[a] = g.bbox_max[a] - g.bbox_min[a];
    }
    g.area = count * h * h;
    g.max_score = fused[g.seed_index];
    g.mean_score = score_sum / count;
    g.max_score_normalized =
        normalize_score(g.max_score, settings.point_threshold, settings.point_lo, settings.point_hi);
    g.indices = std::move(idx);
    regions.push_back(std::move(g));
  }
  std::sort(regions.begin(), regions.end(), [](const Region& a, const Region& b) {
    if (a.max_score != b.max_score) return a.max_score > b.max_score;
    if (a.indices.size() != b.indices.size()) return a.indices.size() > b.indices.size();
    return a.seed_index < b.seed_index;
  });
  for (std::size_t k = 0; k < regions.size(); ++k) {
    regions[k].id = static_cast<int>(k + 1);
    for (std::int64_t i : regions[k].indices) labels[i] = regions[k].id;
  }
  return regions;
}

Decision decide(const Calibration& cal, const float* xyz, const float* fused, std::size_t n, double object_score) {
  if (!std::isfinite(object_score)) {  // Python: f"object score is not finite ({score}); no decision"
    const char* text = std::isnan(object_score) ? "nan" : object_score > 0 ? "inf" : "-inf";
    throw Error(std::string("object score is not finite (") + text + "); no decision");
  }
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) bad += !std::isfinite(fused[i]);
  if (bad) throw Error(std::to_string(bad) + " point score(s) are not finite; no decision");
  Decision d;
  d.reject = object_score > cal.object_threshold;
  d.object_score_normalized = normalize_score(object_score, cal.object_threshold, cal.object_lo, cal.object_hi);
  d.normalized.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    d.normalized[i] = static_cast<float>(normalize_score(fused[i], cal.point_threshold, cal.point_lo, cal.point_hi));
  d.spacing = point_spacing(xyz, n);
  const RegionSettings settings{cal.point_threshold, cal.point_lo, cal.point_hi, cal.min_points, cal.spacing_factor};
  d.regions = find_regions(xyz, fused, n, settings, d.labels, d.spacing);
  return d;
}

nlohmann::json region_json(const Region& g) {
  return {{"id", g.id},
          {"num_points", g.indices.size()},
          {"seed_index", g.seed_index},
          {"centroid", g.centroid},
          {"bbox_min", g.bbox_min},
          {"bbox_max", g.bbox_max},
          {"extent", g.extent},
          {"area", g.area},
          {"max_score", g.max_score},
          {"mean_score", g.mean_score},
          {"max_score_normalized", g.max_score_normalized}};
}

void add_decision_json(nlohmann::json& sample, const Decision& d) {
  sample["decision"] = d.name();
  sample["object_score_normalized"] = d.object_score_normalized;
  nlohmann::json regions = nlohmann::json::array();
  for (const auto& g : d.regions) regions.push_back(region_json(g));
  sample["regions"] = regions;
  sample["num_regions"] = d.regions.size();
}

nlohmann::json calibration_json(const Calibration& cal) {
  return {{"product", cal.product},
          {"calibration_sha256", cal.sha256},
          {"rule", nlohmann::json::parse(cal.rule_json)},
          {"object_threshold", cal.object_threshold},
          {"point_threshold", cal.point_threshold},
          {"file", cal.path}};
}

}  // namespace align3d
