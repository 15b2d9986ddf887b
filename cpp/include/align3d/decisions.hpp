// Per-part decisions (docs/runtime-spec.md section 13.2-13.5): the calibration file, point spacing,
// defect regions and the ok/reject decision. Same results as align3d_rt/runtime/decisions.py.
//
//   align3d::Calibration cal = align3d::load_calibration("product.calibration.json");
//   align3d::check_calibration_source(cal, manifest_sha256);     // refuses another bundle's file
//   align3d::Decision d = align3d::decide(cal, xyz, fused, n, object_score);
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace align3d {

/// A loaded, verified calibration file (spec 13.2).
struct Calibration {
  std::string path;                      // as given (the `file` of scores.json's `calibration`)
  std::string product, sha256;           // sha256 = calibration_sha256
  std::string source_kind, source_hash;  // "bundle" + manifest_sha256, or "run" + run_id
  std::string scoring, dataset, category;
  std::string rule_json;  // the file's `rule` object, serialised (nlohmann::json::dump)
  double object_threshold = 0, object_lo = 0, object_hi = 1;
  double point_threshold = 0, point_lo = 0, point_hi = 1;
  std::int64_t min_points = 10;
  double spacing_factor = 2.5;
};

/// Reads and validates a calibration file: every refusal of 13.2 in the spec's order, as
/// align3d::Error "PATH: problem" (same text as align3d_rt.artifacts.calibration.load_calibration).
Calibration load_calibration(const std::string& path);
/// --dataset/--category with a calibration: an empty value takes the calibration's, another one is
/// refused (align3d::Error, as align3d_rt.cli.calibration_options.resolve_calibration).
void apply_calibration_choices(const Calibration& cal, std::string& dataset, std::string& category);
/// Refuses a calibration made with the reference scoring (spec 12): the inspector scores by spec 8.
void check_calibration_scoring(const Calibration& cal);
/// Refuses (align3d::Error) a calibration that was not made for the bundle with this manifest_sha256.
void check_calibration_source(const Calibration& cal, const std::string& manifest_sha256);

/// norm(x) = clip(0.5 + (x - t) / (hi - lo), 0, 1) in f64 (spec 13.1).
double normalize_score(double x, double threshold, double lo, double hi);

/// Spacing h of spec 13.3 step 1: sqrt of the lower median of each distinct point's squared
/// distance to its nearest other distinct point (f64 from the f32 coordinates); 0 when < 2 distinct.
double point_spacing(const float* xyz, std::size_t n);

/// One defect region (spec 13.3 step 6, id from step 7).
struct Region {
  int id = 0;
  std::vector<std::int64_t> indices;  // ascending
  std::int64_t seed_index = 0;
  std::array<double, 3> centroid{}, bbox_min{}, bbox_max{}, extent{};
  double area = 0, max_score = 0, mean_score = 0, max_score_normalized = 0;
};

struct RegionSettings {
  double point_threshold = 0, point_lo = 0, point_hi = 1;  // t_p and norm_p's range
  std::int64_t min_points = 10;
  double spacing_factor = 2.5;
};

/// Regions of spec 13.3 in severity order (ids 1, 2, ...) and the per-point label array (`labels`
/// resized to n, 0 = no kept region). `spacing` = h (computed when < 0).
std::vector<Region> find_regions(const float* xyz, const float* fused, std::size_t n, const RegionSettings& settings,
                                 std::vector<std::int32_t>& labels, double spacing = -1);

/// The decision for one part (spec 13.4) with its regions and normalised point scores.
struct Decision {
  bool reject = false;  // object_score > object threshold
  double object_score_normalized = 0;
  std::vector<float> normalized;     // norm_p of each fused point score (KEY.normalized.npy)
  std::vector<std::int32_t> labels;  // region id per point (KEY.regions.npy)
  std::vector<Region> regions;
  double spacing = 0;
  const char* name() const { return reject ? "reject" : "ok"; }
};

/// Decides one scored part: xyz N*3 points, fused N scores. Throws align3d::Error (the problem
/// without a path, as Python's InputError) on a non-finite object or point score.
Decision decide(const Calibration& cal, const float* xyz, const float* fused, std::size_t n, double object_score);

}  // namespace align3d
