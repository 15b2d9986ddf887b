// Point-file readers of the inspector (docs/runtime-spec.md section 4): .ply and .pcd (ascii and
// binary, hand-written), MVTec organized .tiff (libtiff), .npy (geometry's reader). Every problem
// throws align3d::Error "PATH: problem".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "align3d/geometry.hpp"

namespace align3d {

/// Fewer valid points than this are refused (spec 4.1; Python: point_headers.MIN_POINTS).
constexpr size_t kMinPoints = 64;
/// Distinct (x, y, z) rows of finite points (-0.0 equals 0.0), counted exactly below ``enough``; any count
/// >= ``enough`` means at least that many (Python: point_headers.count_distinct_locations).
size_t count_distinct_locations(const Cloud& cloud, size_t enough = kMinPoints);
/// "PATH: only N valid point(s); ..." when the cloud has fewer than kMinPoints points, "PATH: only K distinct point
/// location(s) among N valid points; ..." when it has fewer than kMinPoints distinct locations (spec 4.1).
void check_min_points(const std::string& path, const Cloud& cloud);

/// The scored points of one file and, for organized input, their flat index into the 336x336 grid.
struct PointFile {
  Cloud cloud;
  std::vector<std::int64_t> grid_index;  // empty for unorganized files
};

/// x,y,z of every vertex as f32 (Open3D reads f64 then Python casts to f32: same values), rows with
/// a non-finite coordinate dropped, all-zero rows kept (spec 4.1).
Cloud read_ply(const std::string& path);
Cloud read_pcd(const std::string& path);

/// An (H,W,3) float tiff as f32, row-major; h, w receive the size. Refuses non-float or non-3-sample
/// images and grids without a valid cell.
std::vector<float> read_xyz_tiff(const std::string& path, int& h, int& w);

/// Dispatch on the suffix (.ply .pcd .npy .tiff .tif), validity rules of spec 4.1/4.2, then the
/// organized-grid preprocessing (steps 1-6; see preprocess_grid) and, for dataset "real3d",
/// the resampling of 4.3.
PointFile read_point_file(const std::string& path, const std::string& dataset = "");

/// Organized grid -> scored points (spec 4.2 steps 1-6, bit-equal to Python's preprocess_xyz): the
/// seeded RANSAC background plane, the largest exact-DBSCAN cluster, then clean, pad and resize.
PointFile preprocess_grid(const std::vector<float>& xyz, int h, int w, const std::string& path);

}  // namespace align3d
