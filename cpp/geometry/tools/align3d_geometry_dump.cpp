// align3d_geometry_dump: renders a cloud with the C++ geometry library and writes what Python
// compares (views, correspondences, optionally back-projected scores) as .npy files.
//
//   align3d_geometry_dump --cloud CLOUD.npy --out DIR [--preset P] [--image-size S] [--point-size K]
//       [--window W] [--gray G] [--dataset D --category C] [--threads T] [--no-fallback]
//       [--valid-only] [--resample-real3d]
//       [--maps MAPS.npy [--global-probs PROBS.npy] [--fusion-weight W] [--grid-size G]]
//   align3d_geometry_dump --grid GRID.npy --valid VALID.npy --out DIR     (organized steps 4-6)
//   align3d_geometry_dump --grid GRID.npy --mvtec --out DIR               (all MVTec steps 1-6; also valid.npy)
//   align3d_geometry_dump --blur SCORES.npy --out DIR                     (evaluation blur, §8)
//
// Writes into DIR (which must exist): rotations.npy (V,3,3) f64, images.npy (V,S,S,3) u8,
// pixels.npy (V,N,2) i32, visible.npy (V,N) bool, points.npy (N,3) f32 (the rendered points);
// with --maps (V,2,G,G) f32: values.npy (V,N,2) f64 and point_scores.npy (N,3) f32; with
// --global-probs (V,2) f32: object_score.npy (f64 scalar). --grid mode writes points.npy and
// grid_index.npy (and grid336.npy); --blur (H,W) f32 writes blurred.npy. Bad input: one line "PATH: problem" on stderr,
// exit 2.
#include <sys/stat.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "align3d/geometry.hpp"
#include "align3d/npy.hpp"

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::map<std::string, std::string> values;
  bool fallback = true, valid_only = false, resample = false, mvtec = false;
  std::string get(const std::string& key, const std::string& fallback_value = "") const {
    auto it = values.find(key);
    return it == values.end() ? fallback_value : it->second;
  }
  bool has(const std::string& key) const { return values.count(key) != 0; }
};

Options parse_args(int argc, char** argv) {
  Options o;
  const char* valued[] = {"--cloud",  "--out",          "--preset",        "--image-size", "--point-size",
                          "--window", "--gray",         "--dataset",       "--category",   "--threads",
                          "--maps",   "--global-probs", "--fusion-weight", "--grid-size",  "--grid",
                          "--valid",  "--blur"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-fallback") {
      o.fallback = false;
      continue;
    }
    if (a == "--valid-only") {
      o.valid_only = true;
      continue;
    }
    if (a == "--resample-real3d") {
      o.resample = true;
      continue;
    }
    if (a == "--mvtec") {
      o.mvtec = true;
      continue;
    }
    bool known = false;
    for (const char* k : valued) known = known || a == k;
    if (!known) throw UsageError("unknown argument '" + a + "'");
    if (i + 1 >= argc) throw UsageError(a + " needs a value");
    o.values[a] = argv[++i];
  }
  if (!o.has("--out")) throw UsageError("--out DIR is required");
  if (!o.has("--cloud") && !o.has("--grid") && !o.has("--blur"))
    throw UsageError("--cloud, --grid or --blur is required");
  return o;
}

long to_int(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end) throw UsageError(flag + ": not an integer: '" + text + "'");
  return v;
}

double to_double(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end) throw UsageError(flag + ": not a number: '" + text + "'");
  return v;
}

using align3d::NpyType;

// Read an f32 array of the given rank (and trailing dims, 0 = any) or fail with "PATH: problem".
std::vector<float> read_f32(const std::string& path, std::vector<std::size_t>& shape, std::size_t rank) {
  const align3d::NpyArray a = align3d::read_npy(path);
  if (a.shape.size() != rank) throw align3d::NpyError(path, "expected a " + std::to_string(rank) + "-D array");
  shape = a.shape;
  return align3d::npy_as_f32(a);
}

int dump_grid(const Options& o, const std::string& out) {
  std::vector<std::size_t> shape;
  const std::vector<float> grid = read_f32(o.get("--grid"), shape, 3);
  if (shape[2] != 3) throw align3d::NpyError(o.get("--grid"), "expected an (H,W,3) grid");
  const int h = static_cast<int>(shape[0]), w = static_cast<int>(shape[1]);
  std::vector<std::uint8_t> valid;
  if (o.has("--valid")) {
    const align3d::NpyArray v = align3d::read_npy(o.get("--valid"));
    if (v.shape != std::vector<std::size_t>{shape[0], shape[1]})
      throw align3d::NpyError(o.get("--valid"), "expected an (H,W) mask matching the grid");
    for (std::int64_t x : align3d::npy_as_i64(v)) valid.push_back(x != 0);
  } else {
    valid = align3d::grid_valid_mask(grid.data(), h, w);
  }
  if (o.mvtec) {
    const std::string problem = align3d::mvtec_remove_background(grid.data(), valid.data(), h, w);
    if (!problem.empty()) throw align3d::NpyError(o.get("--grid"), problem);
    align3d::write_npy(out + "/valid.npy", NpyType::u8, {shape[0], shape[1]}, valid.data());
  }
  const std::vector<float> resized = align3d::grid_clean_pad_resize(grid.data(), valid.data(), h, w);
  const align3d::GridPoints pts = align3d::grid_points(resized.data());
  align3d::write_npy(out + "/grid336.npy", NpyType::f32, {336, 336, 3}, resized.data());
  align3d::write_npy(out + "/points.npy", NpyType::f32, {pts.cloud.size(), 3}, pts.cloud.xyz.data());
  align3d::write_npy(out + "/grid_index.npy", NpyType::i64, {pts.grid_index.size()}, pts.grid_index.data());
  return 0;
}

int dump_blur(const Options& o, const std::string& out) {
  std::vector<std::size_t> shape;
  const std::vector<float> grid = read_f32(o.get("--blur"), shape, 2);
  const std::vector<float> blurred =
      align3d::blur_grid(grid.data(), static_cast<int>(shape[0]), static_cast<int>(shape[1]));
  align3d::write_npy(out + "/blurred.npy", NpyType::f32, shape, blurred.data());
  return 0;
}

int dump_cloud(const Options& o, const std::string& out) {
  const std::string cloud_path = o.get("--cloud");
  std::size_t n = 0;
  std::vector<float> xyz = align3d::read_npy_points(cloud_path, &n);
  if (o.valid_only) {
    xyz = align3d::drop_invalid_rows(xyz.data(), n).xyz;
    n = xyz.size() / 3;
    if (n == 0) throw align3d::NpyError(cloud_path, "point cloud has no valid point (all zero or NaN)");
  }
  if (o.resample) {
    xyz = align3d::resample_real3d(xyz.data(), n).xyz;
    n = xyz.size() / 3;
  }
  align3d::RenderSettings st;
  st.preset = o.get("--preset", st.preset);
  if (o.has("--image-size")) st.image_size = static_cast<int>(to_int("--image-size", o.get("--image-size")));
  if (o.has("--point-size")) st.point_size = static_cast<int>(to_int("--point-size", o.get("--point-size")));
  if (o.has("--window")) st.window = static_cast<int>(to_int("--window", o.get("--window")));
  if (o.has("--gray")) st.gray = to_double("--gray", o.get("--gray"));
  if (o.has("--dataset")) st = align3d::settings_for_dataset(st, o.get("--dataset"), o.get("--category"));
  const unsigned threads = static_cast<unsigned>(to_int("--threads", o.get("--threads", "0")));
  align3d::RenderedViews r;
  try {
    r = align3d::render_views(xyz.data(), n, st, threads, o.fallback);
  } catch (const std::invalid_argument& e) {
    throw align3d::NpyError(cloud_path, e.what());
  }
  const std::size_t v = static_cast<std::size_t>(r.views), s = static_cast<std::size_t>(r.image_size);
  const std::vector<align3d::Mat3> rots = align3d::view_rotations(st.preset);
  std::vector<double> rot_flat;
  for (const align3d::Mat3& m : rots) rot_flat.insert(rot_flat.end(), m.begin(), m.end());
  align3d::write_npy(out + "/rotations.npy", NpyType::f64, {v, 3, 3}, rot_flat.data());
  align3d::write_npy(out + "/images.npy", NpyType::u8, {v, s, s, 3}, r.images.data());
  align3d::write_npy(out + "/pixels.npy", NpyType::i32, {v, n, 2}, r.pixels.data());
  align3d::write_npy(out + "/visible.npy", NpyType::boolean, {v, n}, r.visible.data());
  align3d::write_npy(out + "/points.npy", NpyType::f32, {n, 3}, xyz.data());
  if (!o.has("--maps")) return 0;
  std::vector<std::size_t> ms;
  const std::vector<float> maps = read_f32(o.get("--maps"), ms, 4);
  if (ms[0] != v || ms[1] != 2 || ms[2] != ms[3])
    throw align3d::NpyError(o.get("--maps"), "expected (V,2,G,G) maps with V = " + std::to_string(v));
  const int g = static_cast<int>(ms[2]);
  const double w = to_double("--fusion-weight", o.get("--fusion-weight", "0.5"));
  const std::vector<double> values = align3d::sample_maps(maps.data(), r.views, g, r.pixels.data(), n, r.image_size);
  const std::vector<float> scores =
      align3d::backproject(maps.data(), r.views, g, r.pixels.data(), r.visible.data(), n, r.image_size, w, threads);
  align3d::write_npy(out + "/values.npy", NpyType::f64, {v, n, 2}, values.data());
  const align3d::BilinearTables tables = align3d::bilinear_tables(g, r.image_size);
  align3d::write_npy(out + "/bilinear_i0.npy", NpyType::i32, {tables.i0.size()}, tables.i0.data());
  align3d::write_npy(out + "/bilinear_i1.npy", NpyType::i32, {tables.i1.size()}, tables.i1.data());
  align3d::write_npy(out + "/bilinear_lam1.npy", NpyType::f32, {tables.lam1.size()}, tables.lam1.data());
  align3d::write_npy(out + "/point_scores.npy", NpyType::f32, {n, 3}, scores.data());
  if (o.has("--global-probs")) {
    std::vector<std::size_t> gs;
    const std::vector<float> probs = read_f32(o.get("--global-probs"), gs, 2);
    if (gs[0] != v || gs[1] != 2)
      throw align3d::NpyError(o.get("--global-probs"), "expected (V,2) global probabilities");
    const double score = align3d::object_score(scores.data(), n, probs.data(), r.views, w);
    align3d::write_npy(out + "/object_score.npy", NpyType::f64, {}, &score);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse_args(argc, argv);
    const std::string out = o.get("--out");
    struct stat info {};
    if (::stat(out.c_str(), &info) != 0 || !S_ISDIR(info.st_mode))
      throw align3d::NpyError(out, "output directory not found");
    if (o.has("--blur")) return dump_blur(o, out);
    return o.has("--grid") ? dump_grid(o, out) : dump_cloud(o, out);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "align3d_geometry_dump: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
