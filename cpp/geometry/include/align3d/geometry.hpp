// align3d geometry: the arithmetic half of the line-side inspector (docs/runtime-spec.md §4-§8).
//
// Everything here is a pure function of its inputs, bit-compatible with the Python CPU reference
// (numba): view rotations, the splat renderer and its correspondences, the never-visible fallback,
// back-projection, fusion and the object score, Real3D-AD resampling and the organized-grid steps.
// Arrays are flat std::vectors in C order; inputs are pointer + sizes. Errors throw
// std::invalid_argument with a one-line message (no path: the caller prefixes it).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace align3d {

/// Side of the organized grid and Real3D-AD's point count (336 * 336), spec §4.2/§4.3.
constexpr int kGridSide = 336;
constexpr std::size_t kReal3dPoints = 112896;

/// A point cloud: xyz[N*3] f32, row i = point i (the scored points, in order).
struct Cloud {
  std::vector<float> xyz;
  std::size_t size() const { return xyz.size() / 3; }
};

/// Rendering settings (spec §2.2 render_settings, §5.1). Filled from the bundle manifest.
struct RenderSettings {
  std::string preset = "paper9";  ///< view list: paper9, mvtec9 or eyecandies9 (§5.2)
  int image_size = 336;           ///< S
  int point_size = 8;             ///< splat side in pixels at the reference window
  int window = 1024;              ///< reference window side W
  double gray = 0.7;              ///< base gray level
};

/// Throws std::invalid_argument unless preset is known, S >= 1, W >= 1 and gray is finite. Any
/// point_size is accepted, as in Python (a splat without a pixel centre covers floor(pos), §5.5).
void check_settings(const RenderSettings& settings);

/// §5.1: `base` with point_size and window replaced for dataset (mvtec3d, synthetic, eyecandies,
/// real3d; category matters for mvtec3d/synthetic). An empty or unknown dataset returns `base`
/// unchanged, as Python's Detector.settings_for_sample does (check is_known_dataset to refuse).
RenderSettings settings_for_dataset(const RenderSettings& base, const std::string& dataset,
                                    const std::string& category);

/// True for mvtec3d, synthetic, eyecandies and real3d.
bool is_known_dataset(const std::string& dataset);

/// One preset entry: rotation about `axis` ('x', 'y' or 'z') by `degrees`.
struct ViewRotation {
  char axis;
  double degrees;
};

/// The preset's views in order (§5.2); throws std::invalid_argument for an unknown name.
std::vector<ViewRotation> view_preset(const std::string& preset);

/// Row-major 3x3 f64 matrix.
using Mat3 = std::array<double, 9>;

/// Right-handed rotation about axis by degrees (§5.2, bit-exact with numpy).
Mat3 axis_rotation(char axis, double degrees);

/// R_v = A(axis_v, deg_v) * FLIP for every view of the preset (§5.2).
std::vector<Mat3> view_rotations(const std::string& preset);

/// Output of the renderer (§5.8). V views, N points, S = image_size.
struct RenderedViews {
  int views = 0;
  int image_size = 0;
  std::size_t points = 0;
  std::vector<std::uint8_t> images;   ///< [V][S][S][3] RGB, R=G=B, background 255: the encoder input (§3)
  std::vector<std::int32_t> pixels;   ///< [V][N][2] correspondence pixel (x = column, y = row)
  std::vector<std::uint8_t> visible;  ///< [V][N] 0/1; after the fallback (§6) unless it was disabled
};

/// Render the views of a cloud with the splat renderer (§5) and the correspondences.
/// xyz[n*3] f32, 1 <= n < 2^32-1, all finite (else std::invalid_argument).
/// threads: worker threads over views (0 = std::thread::hardware_concurrency(), 1 = inline).
/// fallback: apply the never-visible fallback (§6) to `visible` (the reference does).
RenderedViews render_views(const float* xyz, std::size_t n, const RenderSettings& settings, unsigned threads = 0,
                           bool fallback = true);

/// §6 in place on visible[views][n] (0/1): a point visible in no view copies the original flags
/// of the index-nearest point visible somewhere (ties: lower index). No-op if all or none seen.
void apply_visibility_fallback(std::uint8_t* visible, int views, std::size_t n);

/// PyTorch bilinear (align_corners=False) coordinates, per destination d in 0..S-1 (§7).
struct BilinearTables {
  std::vector<std::int32_t> i0, i1;
  std::vector<float> lam1;
};
BilinearTables bilinear_tables(int grid_size, int image_size);

/// Per-view values: out[V][N][2] f64 = bilinear value of maps[v][branch] (maps[V][2][G][G] f32)
/// at pixels[v][i], for every point and view (visible or not), exactly as §7's val_b.
/// Throws if a pixel lies outside [0, S-1].
std::vector<double> sample_maps(const float* maps, int views, int grid_size, const std::int32_t* pixels, std::size_t n,
                                int image_size);

/// §7 back-projection + fusion: point_scores[N][3] f32 = (render, aligned, fused), the mean over
/// the visible views (0,0,0 where visible nowhere). maps[V][2][G][G], pixels[V][N][2],
/// visible[V][N]. fusion_weight in [0,1]. Throws for a visible pixel outside [0, S-1].
/// threads as in render_views.
std::vector<float> backproject(const float* maps, int views, int grid_size, const std::int32_t* pixels,
                               const std::uint8_t* visible, std::size_t n, int image_size, double fusion_weight,
                               unsigned threads = 0);

/// §8: f32 fused global probability of each view: f32(f32(w)*g[v][1]) + f32(f32(1-w)*g[v][0]).
std::vector<float> fuse_global_probs(const float* global_probs, int views, double fusion_weight);

/// numpy's float32 pairwise sum (np.add.reduce) of values[n], as np.mean uses it (§8).
float numpy_sum_f32(const float* values, std::size_t n);

/// §8 object score: f64(max_i point_scores[i][2]) + f64(mean_v fused global prob).
/// point_scores[n][3] (0 peak when n == 0); global_probs[V][2].
double object_score(const float* point_scores, std::size_t n, const float* global_probs, int views,
                    double fusion_weight);

/// §8 evaluation protocol only: values at grid_index onto a zeroed f32 [h][w] grid.
std::vector<float> points_to_grid(const float* values, const std::int64_t* grid_index, std::size_t n, int h, int w);

/// §8 evaluation protocol only: scipy gaussian_filter(sigma, mode='reflect', truncate=4) of a
/// f32 [h][w] grid (axis 0 then axis 1, f64 accumulation, f32 after each axis).
std::vector<float> blur_grid(const float* grid, int h, int w, double sigma = 4.0);

/// §4.1 .npy validity: drop rows with a non-finite coordinate or all three 0.0 (order kept).
Cloud drop_invalid_rows(const float* xyz, std::size_t n);

/// §4.3 Real3D-AD resampling to exactly `target` points: unchanged when n == target, exact
/// farthest-point sampling (f64, start at 0, ties to the lowest index) when larger, originals +
/// midpoints of k-nearest neighbours when smaller, repetition when n == 1. Neighbour order at
/// exactly equal distance is by index here (scipy's kd-tree order may differ in such ties).
Cloud resample_real3d(const float* xyz, std::size_t n, std::size_t target = kReal3dPoints);

/// Index sequence of exact farthest-point sampling (§4.3), `count` picks, in pick order.
std::vector<std::int64_t> farthest_point_sampling(const float* xyz, std::size_t n, std::size_t count);

/// §4.2 valid cell: finite and not all zero. grid[h][w][3] f32 -> mask[h][w] 0/1.
std::vector<std::uint8_t> grid_valid_mask(const float* grid, int h, int w);

/// §4.2 step 1: the valid cells of the 10-pixel border band as f64 points [M][3] (row-major order).
std::vector<double> grid_border_points(const float* grid, const std::uint8_t* valid, int h, int w);

/// §4.2 step 2, arithmetic only: clear valid[] cells whose distance to plane (a,b,c,d) is < 0.005.
void grid_remove_plane_cells(const float* grid, std::uint8_t* valid, int h, int w, const std::array<double, 4>& plane,
                             double min_distance = 0.005);

/// §4.2 steps 4+5: invalid cells zeroed, padded to a square (multiple of 100) and nearest-resized
/// to [336][336][3] f32.
std::vector<float> grid_clean_pad_resize(const float* grid, const std::uint8_t* valid, int h, int w,
                                         int size = kGridSide);

/// §4.2 steps 2-3 constants (align3d_rt/data/mvtec3d.py, plane_ransac.py).
constexpr double kPlaneFitThreshold = 0.004;
constexpr int kPlaneRansacN = 50;
constexpr int kPlaneIterations = 1000;
constexpr std::uint64_t kPlaneSeed = 0;
constexpr double kPlaneRemoveDistance = 0.005;
constexpr double kDbscanEps = 0.006;
constexpr int kDbscanMinPoints = 30;
constexpr double kMvtecMaxCoordinate = 1000.0;  ///< metres; a valid cell beyond it is refused

/// splitmix64: advances `state` by 0x9E3779B97F4A7C15 and returns the mixed value (§4.2 step 2).
std::uint64_t splitmix64_next(std::uint64_t& state);

/// §4.2 step 2: the seeded RANSAC plane (a,b,c,d) of pts [m][3] f64 (partial Fisher-Yates samples of
/// sample_n points per hypothesis, least-squares hypotheses, most inliers `< threshold` wins, ties to
/// the first, least-squares refit on its inliers). False (plane untouched) when m < sample_n or no
/// hypothesis spans a plane.
bool fit_plane_ransac(const double* pts, std::size_t m, double threshold, int sample_n, int iterations,
                      std::uint64_t seed, std::array<double, 4>& plane);

/// §4.2 step 3: DBSCAN labels (-1 = noise) of xyz [n][3] f64 with the exact neighbour predicate
/// ((dx*dx + dy*dy) + dz*dz) <= eps*eps; clusters numbered by their first core point.
std::vector<std::int64_t> dbscan_labels(const double* xyz, std::size_t n, double eps, int min_points);

/// §4.2 steps 1-3 on valid[h][w] in place (background plane removed, largest cluster kept).
/// Returns "" on success, else the problem (Python's message) with valid[] all 0.
std::string mvtec_remove_background(const float* grid, std::uint8_t* valid, int h, int w);

/// §4.2 step 6: the valid cells of a [size][size][3] grid in row-major order, and their flat
/// indices r*size + c.
struct GridPoints {
  Cloud cloud;
  std::vector<std::int64_t> grid_index;
};
GridPoints grid_points(const float* grid, int size = kGridSide);

}  // namespace align3d
