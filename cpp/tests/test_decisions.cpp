// Decisions (spec 13.2-13.4): point spacing, planted regions, merging, size filter, severity order,
// the decision, and every refusal of a calibration file.
#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "align3d/decisions.hpp"
#include "align3d/inspector.hpp"
#include "bundle.hpp"
#include "decision_json.hpp"
#define CHECK_ERROR_TYPE align3d::Error  // what EXPECT_ERROR expects
#include "check.hpp"                     // cpp/geometry/tests/check.hpp, shared with the geometry tests

namespace fs = std::filesystem;
using namespace align3d;

namespace {

// Points of a W x H grid in the z = 0 plane with the given pitch (row-major, index = y * W + x).
std::vector<float> grid(int w, int h, float pitch) {
  std::vector<float> p;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) p.insert(p.end(), {x * pitch, y * pitch, 0.0f});
  return p;
}

// Sets score `value` on the block [x0, x0+bw) x [y0, y0+bh) of a W-wide grid; returns its indices.
std::vector<std::int64_t> plant(std::vector<float>& scores, int w, int x0, int y0, int bw, int bh, float value) {
  std::vector<std::int64_t> idx;
  for (int y = y0; y < y0 + bh; ++y)
    for (int x = x0; x < x0 + bw; ++x) {
      scores[y * w + x] = value;
      idx.push_back(y * w + x);
    }
  return idx;
}

double brute_spacing(const std::vector<float>& p) {
  const size_t n = p.size() / 3;
  std::vector<double> d2;
  for (size_t i = 0; i < n; ++i) {
    double best = INFINITY;
    bool dup_before = false;
    for (size_t j = 0; j < n; ++j) {
      double s = 0;
      for (int a = 0; a < 3; ++a) {
        const double d = static_cast<double>(p[3 * i + a]) - static_cast<double>(p[3 * j + a]);
        s += d * d;
      }
      if (s == 0 && j < i) dup_before = true;
      if (s > 0) best = std::min(best, s);
    }
    if (!dup_before) d2.push_back(best);
  }
  std::sort(d2.begin(), d2.end());
  return d2.size() < 2 ? 0.0 : std::sqrt(d2[(d2.size() - 1) / 2]);
}

void spacing() {
  CHECK(point_spacing(grid(20, 15, 0.5f).data(), 300) == 0.5);  // regular grid: exactly the pitch
  auto dup = grid(20, 15, 0.5f);
  const auto copy = dup;
  dup.insert(dup.end(), copy.begin(), copy.end());  // every location twice: duplicates are one location
  CHECK(point_spacing(dup.data(), 600) == 0.5);
  const auto fine = grid(40, 40, 0.01f);
  CHECK(std::abs(point_spacing(fine.data(), 1600) - 0.01) < 1e-7);
  const float one[6] = {1, 2, 3, 1, 2, 3};
  CHECK(point_spacing(one, 2) == 0.0);  // one distinct location
  CHECK(point_spacing(one, 1) == 0.0);
  const float signed_zero[9] = {0.0f, 0.0f, 0.0f, -0.0f, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f};
  CHECK(point_spacing(signed_zero, 3) == 1.0);  // rows compared by value (numpy's unique): -0.0 == 0.0
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> cloud(3 * 1500);
  for (auto& v : cloud) v = nd(rng);
  for (int i = 0; i < 40; ++i)  // some exact duplicates
    for (int a = 0; a < 3; ++a) cloud[3 * (100 + i) + a] = cloud[3 * i + a];
  CHECK(point_spacing(cloud.data(), 1500) == brute_spacing(cloud));  // exact neighbour search
}

RegionSettings settings(std::int64_t min_points = 10, double factor = 2.5) {
  return RegionSettings{0.5, 0.0, 1.0, min_points, factor};
}

void planted_regions() {
  const int w = 30, h = 30;
  const auto pts = grid(w, h, 1.0f);
  std::vector<float> s(w * h, 0.1f);
  const auto a = plant(s, w, 2, 2, 4, 3, 0.8f);    // 12 points
  const auto b = plant(s, w, 15, 15, 5, 5, 0.7f);  // 25 points, one of them hotter
  s[16 * w + 17] = 0.9f;
  std::vector<std::int32_t> labels;
  const auto regions = find_regions(pts.data(), s.data(), w * h, settings(), labels);
  CHECK(regions.size() == 2);
  if (regions.size() != 2) return;
  CHECK(regions[0].indices == b && regions[1].indices == a);  // severity: max_score descending
  CHECK(regions[0].id == 1 && regions[1].id == 2);
  CHECK(regions[0].seed_index == 16 * w + 17 && regions[1].seed_index == a[0]);
  CHECK(regions[0].centroid[0] == 17.0 && regions[0].centroid[1] == 17.0 && regions[0].centroid[2] == 0.0);
  CHECK(regions[1].bbox_min[0] == 2.0 && regions[1].bbox_max[0] == 5.0 && regions[1].extent[1] == 2.0);
  CHECK(regions[1].area == 12.0 && regions[0].area == 25.0);  // num_points * h^2, h = 1
  CHECK(std::abs(regions[0].max_score - 0.9) < 1e-7 && std::abs(regions[1].mean_score - 0.8) < 1e-7);
  CHECK(std::abs(regions[0].max_score_normalized - normalize_score(0.9f, 0.5, 0, 1)) < 1e-15);
  CHECK(std::count(labels.begin(), labels.end(), 1) == 25 && std::count(labels.begin(), labels.end(), 2) == 12);
  CHECK(std::count(labels.begin(), labels.end(), 0) == w * h - 37);
  for (auto i : a) CHECK(labels[i] == 2);
}

void merging_and_filter() {
  const int w = 30, h = 10;
  const auto pts = grid(w, h, 1.0f);
  std::vector<int32_t> labels;
  std::vector<float> s(w * h, 0.0f);
  plant(s, w, 2, 2, 4, 4, 0.9f);
  plant(s, w, 7, 2, 4, 4, 0.8f);  // one empty column: distance 2 <= r = 2.5 -> one region
  auto regions = find_regions(pts.data(), s.data(), w * h, settings(), labels);
  CHECK(regions.size() == 1 && regions[0].indices.size() == 32);
  CHECK(find_regions(pts.data(), s.data(), w * h, settings(10, 1.9), labels).size() == 2);  // r = 1.9 < 2
  std::vector<float> t(w * h, 0.0f);
  plant(t, w, 2, 2, 4, 4, 0.9f);
  plant(t, w, 8, 2, 4, 4, 0.8f);  // two empty columns: distance 3 > 2.5 -> two regions
  CHECK(find_regions(pts.data(), t.data(), w * h, settings(), labels).size() == 2);
  std::vector<float> u(w * h, 0.0f);
  plant(u, w, 2, 2, 3, 3, 0.9f);   // 9 points: below min_points 10
  plant(u, w, 20, 2, 5, 2, 0.6f);  // 10 points: kept
  regions = find_regions(pts.data(), u.data(), w * h, settings(), labels);
  CHECK(regions.size() == 1 && regions[0].indices.size() == 10 && labels[2 * w + 2] == 0 && labels[2 * w + 20] == 1);
  CHECK(find_regions(pts.data(), u.data(), w * h, settings(9), labels).size() == 2);
  CHECK(find_regions(pts.data(), u.data(), w * h, settings(11), labels).empty());
  std::vector<float> v(w * h, 0.0f);
  v[5] = 0.5f;  // at the threshold: not hot (strict)
  CHECK(find_regions(pts.data(), v.data(), w * h, settings(1), labels).empty());
}

void repeated_points() {
  // one location 112,896 times (real3d's N = 1 case), all hot: h = 0, one region, no quadratic blow-up
  const size_t n = 112896;
  std::vector<float> pts(3 * n);
  for (size_t i = 0; i < n; ++i) pts[3 * i] = 0.25f, pts[3 * i + 1] = -1.0f, pts[3 * i + 2] = 2.0f;
  std::vector<float> s(n, 0.9f);
  s[77] = 0.95f;
  std::vector<int32_t> labels;
  const auto r = find_regions(pts.data(), s.data(), n, settings(), labels);
  CHECK(r.size() == 1 && r[0].indices.size() == n && r[0].seed_index == 77 && r[0].area == 0.0);
  CHECK(r.size() == 1 && r[0].centroid[0] == 0.25 && r[0].extent[2] == 0.0);
  // duplicates inside a grid: a doubled hot block is one region of twice the points
  auto g = grid(20, 20, 1.0f);
  const auto copy = g;
  g.insert(g.end(), copy.begin(), copy.end());
  std::vector<float> t(800, 0.0f);
  plant(t, 20, 3, 3, 3, 3, 0.9f);
  for (int i = 0; i < 400; ++i) t[400 + i] = t[i];
  const auto d = find_regions(g.data(), t.data(), 800, settings(), labels);
  CHECK(d.size() == 1 && d[0].indices.size() == 18 && d[0].area == 18.0);
}

void ordering() {
  const int w = 40, h = 10;
  const auto pts = grid(w, h, 1.0f);
  std::vector<float> s(w * h, 0.0f);
  const auto small = plant(s, w, 1, 1, 2, 2, 0.7f);
  const auto big = plant(s, w, 10, 1, 3, 3, 0.7f);
  const auto late = plant(s, w, 30, 1, 2, 2, 0.7f);
  std::vector<int32_t> labels;
  const auto r = find_regions(pts.data(), s.data(), w * h, settings(1), labels);
  CHECK(r.size() == 3);
  if (r.size() == 3) CHECK(r[0].indices == big && r[1].indices == small && r[2].indices == late);  // size, then seed
}

Calibration calibration(double t_obj, double lo, double hi) {
  Calibration c;
  c.object_threshold = t_obj, c.object_lo = lo, c.object_hi = hi;
  c.point_threshold = 0.5, c.point_lo = 0.0, c.point_hi = 1.0;
  return c;
}

void decision() {
  const auto pts = grid(10, 10, 1.0f);
  std::vector<float> s(100, 0.25f);
  s[3] = 2.0f;
  const Calibration c = calibration(0.3, 0.1, 0.5);
  const Decision at = decide(c, pts.data(), s.data(), 100, 0.3);
  CHECK(!at.reject && std::string(at.name()) == "ok" && at.object_score_normalized == 0.5);
  const Decision above = decide(c, pts.data(), s.data(), 100, 0.30000000000000004);
  CHECK(above.reject && std::string(above.name()) == "reject");
  CHECK(decide(c, pts.data(), s.data(), 100, 5.0).object_score_normalized == 1.0);
  CHECK(decide(c, pts.data(), s.data(), 100, -5.0).object_score_normalized == 0.0);
  CHECK(at.normalized[0] == 0.25f && at.normalized[3] == 1.0f && at.spacing == 1.0 && at.regions.empty());
  EXPECT_ERROR(decide(c, pts.data(), s.data(), 100, NAN), "object score is not finite (nan); no decision");
  EXPECT_ERROR(decide(c, pts.data(), s.data(), 100, -INFINITY), "object score is not finite (-inf); no decision");
  s[7] = INFINITY;
  s[9] = NAN;
  EXPECT_ERROR(decide(c, pts.data(), s.data(), 100, 0.2), "2 point score(s) are not finite; no decision");
}

// ---- calibration files ----------------------------------------------------------------------------
const fs::path kDir = fs::temp_directory_path() / ("align3d_test_cal_" + std::to_string(::getpid()));
const std::string kBundleHash = std::string(64, 'a');

nlohmann::json valid_calibration() {
  return {{"format", "align3d_rt.calibration"},
          {"format_version", 1},
          {"product", "bagel"},
          {"created", "2026-12-02T22:00:00+0000"},
          {"software", {{"align3d_rt", "0.1"}}},
          {"source", {{"kind", "bundle"}, {"manifest_sha256", kBundleHash}, {"path", "/b"}}},
          {"scoring", "default"},
          {"dataset", ""},
          {"category", ""},
          {"rule",
           {{"name", "conformal"},
            {"target_false_reject", 0.05},
            {"confidence", nullptr},
            {"target_false_accept", nullptr}}},
          {"n_good", 20},
          {"n_bad", 0},
          {"object",
           {{"threshold", 0.5},
            {"lo", 0.25},
            {"hi", 0.75},
            {"rank", 20},
            {"false_reject_bound", 0.04},
            {"false_reject_upper_90", 0.1}}},
          {"point", {{"threshold", 0.6}, {"lo", 0.0}, {"hi", 1.0}, {"rank", 20}}},
          {"regions", {{"min_points", 10}, {"spacing_factor", 2.5}}},
          {"good_object_scores", {0.25, 0.5, 0.75}}};
}

std::string write(const std::string& name, const std::string& text) {
  const fs::path p = kDir / name;
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
  return p.string();
}

std::string write_signed(const std::string& name, nlohmann::json doc) {
  doc.erase("calibration_sha256");
  doc["calibration_sha256"] = sha256_hex(canonical_json(doc));
  return write(name, doc.dump(2) + "\n");
}

// The refusal for a signed file whose field `ptr` is set to `value` (removed when value is discarded).
void expect_field_refused(const std::string& ptr, const nlohmann::json& value, const std::string& problem) {
  nlohmann::json doc = valid_calibration();
  const nlohmann::json::json_pointer p(ptr);
  if (value.is_discarded()) doc[p.parent_pointer()].erase(p.back());
  else
    doc[p] = value;
  const std::string path = write_signed("field.json", doc);
  EXPECT_ERROR(load_calibration(path), path + ": " + problem);
}

void calibration_files() {
  fs::create_directories(kDir);
  const std::string good = write_signed("good.json", valid_calibration());
  const Calibration c = load_calibration(good);
  CHECK(c.product == "bagel" && c.source_kind == "bundle" && c.source_hash == kBundleHash);
  CHECK(c.object_threshold == 0.5 && c.point_threshold == 0.6 && c.min_points == 10 && c.spacing_factor == 2.5);
  CHECK(nlohmann::json::parse(c.rule_json)["name"] == "conformal" && c.sha256.size() == 64 && c.path == good);
  check_calibration_source(c, kBundleHash);  // accepted
  EXPECT_ERROR(check_calibration_source(c, std::string(64, 'b')),
               good + ": calibration is for bundle " + kBundleHash + ", this bundle is " + std::string(64, 'b'));
  const nlohmann::json json = calibration_json(c);
  CHECK(json["file"] == good && json["object_threshold"] == 0.5 && json["calibration_sha256"] == c.sha256);
  // pathlib's spelling of the path in messages and `file`
  CHECK(load_calibration(kDir.string() + "//./good.json").path == good);

  // 13.2 refusals, in the spec's order
  const std::string missing = (kDir / "nope.json").string();
  EXPECT_ERROR(load_calibration(missing), missing +
                                              ": unreadable calibration (FileNotFoundError: [Errno 2] No such "
                                              "file or directory: '" +
                                              missing + "')");
  EXPECT_ERROR(load_calibration(kDir.string()),
               kDir.string() + ": unreadable calibration (a folder, not a calibration file)");
  const std::string junk = write("junk.json", "{\"format\": ");
  EXPECT_ERROR_HAS(load_calibration(junk), junk + ": unreadable calibration (JSONDecodeError: ");
  const std::string bom = write("bom.json", "\xEF\xBB\xBF{}");
  EXPECT_ERROR_HAS(load_calibration(bom), bom + ": unreadable calibration (JSONDecodeError: Unexpected UTF-8 BOM");
  const std::string list = write("list.json", "[1]");
  EXPECT_ERROR(load_calibration(list), list + ": not an align3d_rt.calibration file");
  auto doc = valid_calibration();
  doc["format"] = "align3d_rt.bundle";
  const std::string other = write_signed("other.json", doc);
  EXPECT_ERROR(load_calibration(other), other + ": not an align3d_rt.calibration file");
  const std::string rerun = "re-run align3d-rt calibrate";
  expect_field_refused("/format_version", 2,
                       "calibration format version 2, this align3d_rt reads version 1; "
                       "upgrade align3d_rt, or " +
                           rerun);
  expect_field_refused("/format_version", "1",
                       "calibration format version '1', this align3d_rt reads version 1; " + rerun);
  expect_field_refused("/format_version", true,
                       "calibration format version True, this align3d_rt reads version 1; " + rerun);
  expect_field_refused("/format_version", nlohmann::json::value_t::discarded,
                       "calibration format version None, this align3d_rt reads version 1; " + rerun);
  doc = valid_calibration();
  doc["format_version"] = 1.0;  // Python: 1.0 == 1
  CHECK(load_calibration(write_signed("v10.json", doc)).product == "bagel");

  // NaN / Infinity (read by Python's json): refused before the digest; the words inside strings are text
  std::string text = valid_calibration().dump(2);
  const std::string nan = write("nan.json", text.replace(text.find("0.25"), 4, "NaN"));
  EXPECT_ERROR(load_calibration(nan), nan +
                                          ": calibration holds NaN or infinite numbers (the file was edited or is "
                                          "corrupt); re-run align3d-rt calibrate");
  text = valid_calibration().dump(2);
  const std::string inf = write("inf.json", text.replace(text.find("0.75"), 4, "-Infinity"));
  EXPECT_ERROR_HAS(load_calibration(inf), inf + ": calibration holds NaN or infinite numbers");
  doc = valid_calibration();
  doc["product"] = "NaN \"Infinity\" NaN";
  CHECK(load_calibration(write_signed("nan_text.json", doc)).product == "NaN \"Infinity\" NaN");

  // edited after signing: checksum mismatch (also before any field check)
  doc = valid_calibration();
  doc["calibration_sha256"] = sha256_hex(canonical_json(doc));
  doc["object"]["threshold"] = 0.7;
  const std::string edited = write("edited.json", doc.dump(2));
  EXPECT_ERROR(load_calibration(edited), edited +
                                             ": calibration checksum mismatch (the file was edited or is "
                                             "corrupt); re-run align3d-rt calibrate");
  doc["object"]["lo"] = "x";
  const std::string edited2 = write("edited2.json", doc.dump(2));
  EXPECT_ERROR_HAS(load_calibration(edited2), "calibration checksum mismatch");
  doc = valid_calibration();
  const std::string unsigned_ = write("unsigned.json", doc.dump(2));
  EXPECT_ERROR_HAS(load_calibration(unsigned_), "calibration checksum mismatch");

  const auto gone = nlohmann::json::value_t::discarded;
  expect_field_refused("/object", gone, "object thresholds are missing");
  expect_field_refused("/point", 3, "point thresholds are missing");
  expect_field_refused("/object/threshold", gone, "object.threshold is missing");
  expect_field_refused("/point/hi", gone, "point.hi is missing");
  expect_field_refused("/object/lo", "0.1", "object.lo is not a number ('0.1')");
  expect_field_refused("/object/lo", nullptr, "object.lo is not a number (None)");
  expect_field_refused("/point/threshold", false, "point.threshold is not a number (False)");
  expect_field_refused("/object/lo", 0.75,
                       "inverted or degenerate object thresholds (threshold 0.5, lo 0.75, hi 0.75: "
                       "needs lo < hi and lo <= threshold <= hi); " +
                           rerun);
  expect_field_refused("/point/threshold", 2,
                       "inverted or degenerate point thresholds (threshold 2.0, lo 0.0, hi 1.0: "
                       "needs lo < hi and lo <= threshold <= hi); " +
                           rerun);
  expect_field_refused("/regions", gone, "regions settings are missing");
  expect_field_refused("/regions/min_points", 0, "regions.min_points must be an integer >= 1 (got 0)");
  expect_field_refused("/regions/min_points", 2.0, "regions.min_points must be an integer >= 1 (got 2.0)");
  expect_field_refused("/regions/spacing_factor", 0, "regions.spacing_factor must be a finite number > 0 (got 0)");
  expect_field_refused("/regions/spacing_factor", -1.5,
                       "regions.spacing_factor must be a finite number > 0 (got -1.5)");
  expect_field_refused("/product", "", "bad calibration field 'product' (a non-empty string)");
  expect_field_refused("/source/kind", "file",
                       "bad calibration field 'source' (kind 'bundle' with manifest_sha256, "
                       "or kind 'run' with run_id)");
  expect_field_refused("/source/manifest_sha256", 5,
                       "bad calibration field 'source' (kind 'bundle' with "
                       "manifest_sha256, or kind 'run' with run_id)");
  expect_field_refused("/scoring", "fancy", "bad calibration field 'scoring' (one of default, reference)");
  expect_field_refused("/category", nullptr, "bad calibration field 'category' (a string)");
  expect_field_refused("/rule/name", "best",
                       "bad calibration field 'rule' (an object whose name is one of conformal, "
                       "pac, f1, false-accept)");
  expect_field_refused("/n_bad", -1, "bad calibration field 'n_bad' (an integer >= 0)");
  expect_field_refused("/point/rank", 1.5, "bad calibration field 'point.rank' (an integer or null)");
  expect_field_refused("/good_object_scores", {1, "x"},
                       "bad calibration field 'good_object_scores' (a list of finite numbers)");

  // --dataset / --category: the calibration's are the defaults, another value is refused
  doc = valid_calibration();
  doc["dataset"] = "mvtec3d";
  doc["category"] = "bagel";
  const Calibration mv = load_calibration(write_signed("mvtec.json", doc));
  std::string dataset, category = "bagel";
  apply_calibration_choices(mv, dataset, category);
  CHECK(dataset == "mvtec3d" && category == "bagel");
  dataset = "real3d";
  EXPECT_ERROR(apply_calibration_choices(mv, dataset, category),
               mv.path +
                   ": calibration was made with --dataset 'mvtec3d'; --dataset 'real3d' differs (leave "
                   "--dataset out to use the calibration's)");
  check_calibration_scoring(mv);
  doc["scoring"] = "reference";
  EXPECT_ERROR_HAS(check_calibration_scoring(load_calibration(write_signed("ref.json", doc))),
                   "calibration was made with reference scoring, this inspector uses default");

  // a run's calibration is not this bundle's
  doc = valid_calibration();
  doc["source"] = {{"kind", "run"}, {"run_id", std::string(64, 'c')}};
  const Calibration run = load_calibration(write_signed("run.json", doc));
  EXPECT_ERROR(check_calibration_source(run, kBundleHash),
               run.path + ": calibration is for run " + std::string(64, 'c') + ", this bundle is " + kBundleHash);
  fs::remove_all(kDir);
}

}  // namespace

int main() {
  spacing();
  planted_regions();
  merging_and_filter();
  ordering();
  repeated_points();
  decision();
  calibration_files();
  return check::finish("test_decisions");
}
