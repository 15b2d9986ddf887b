// Point-file readers: ascii/binary PLY and PCD, header lies, truncation, NaN/inf/zero rows, tiffs.
#include <tiffio.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <vector>

#include "align3d/inspector.hpp"
#include "align3d/npy.hpp"
#define CHECK_ERROR_TYPE align3d::Error  // what EXPECT_ERROR expects
#include "check.hpp"                     // cpp/geometry/tests/check.hpp, shared with the geometry tests
#include "readers.hpp"

namespace fs = std::filesystem;
using namespace align3d;

namespace {

const fs::path kDir = fs::temp_directory_path() / ("align3d_test_readers_" + std::to_string(::getpid()));
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

std::string write(const std::string& name, const std::string& bytes) {
  const fs::path p = kDir / name;
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
  return p.string();
}

template <typename T>
std::string raw(std::initializer_list<T> values, bool big_endian = false) {
  std::string out;
  for (T v : values) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    if (big_endian) std::reverse(b, b + sizeof(T));
    out.append(b, sizeof(T));
  }
  return out;
}

bool same(const Cloud& c, const std::vector<float>& want) { return c.xyz == want; }

void ply_tests() {
  const std::string ascii =
      "ply\nformat ascii 1.0\ncomment made by hand\nelement vertex 4\nproperty float x\nproperty float y\n"
      "property float z\nproperty uchar red\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
      "1 2 3 255\nnan 0 0 1\n0 0 0 7\n4 5 6.5 0\n3 0 1 2\n";
  CHECK(same(read_ply(write("a.ply", ascii)), {1, 2, 3, 0, 0, 0, 4, 5, 6.5f}));  // NaN dropped, zero row kept

  // binary little endian, double coordinates, a face element BEFORE the vertices, extra property
  std::string le =
      "ply\nformat binary_little_endian 1.0\nelement face 1\nproperty list uchar int vertex_indices\n"
      "element vertex 3\nproperty double x\nproperty double y\nproperty double z\nproperty float s\nend_header\n";
  le += raw<std::uint8_t>({2}) + raw<std::int32_t>({0, 1});
  le += raw<double>({1.5, 2.5, 3.5}) + raw<float>({9}) + raw<double>({INFINITY, 1, 1}) + raw<float>({9}) +
        raw<double>({1e300, 0, 0}) + raw<float>({9});  // inf row dropped, 1e300 -> inf in f32: dropped
  CHECK(same(read_ply(write("le.ply", le)), {1.5f, 2.5f, 3.5f}));

  std::string be =
      "ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
      "property float z\nend_header\n";
  be += raw<float>({1, 2, 3, -1, -2, -3}, true);
  CHECK(same(read_ply(write("be.ply", be)), {1, 2, 3, -1, -2, -3}));

  // header lies: more vertices than bytes / lines
  std::string lie =
      "ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty float x\nproperty float y\n"
      "property float z\nend_header\n" +
      raw<float>({1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  const auto lie_path = write("lie.ply", lie);
  EXPECT_ERROR(read_ply(lie_path), lie_path + ": header promises 5 vertex rows, the file holds 3");
  const auto lie_a = write("lie_a.ply",
                           "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                           "property float z\nend_header\n1 2 3\n");
  EXPECT_ERROR(read_ply(lie_a), lie_a + ": header promises 3 vertex rows, the file holds 1");
  const auto huge = write("huge.ply",
                          "ply\nformat binary_little_endian 1.0\nelement vertex 1099511627776\n"
                          "property float x\nproperty float y\nproperty float z\nend_header\n" +
                              raw<float>({1, 2, 3}));
  EXPECT_ERROR_HAS(read_ply(huge), huge + ": header promises 1099511627776 vertex rows, the file holds 1");
  const auto over = write("over.ply", "ply\nformat ascii 1.0\nelement vertex 99999999999999999999\nend_header\n");
  EXPECT_ERROR_HAS(read_ply(over), over + ": malformed PLY header (bad element count");
  const auto trunc = write("trunc.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n");
  EXPECT_ERROR(read_ply(trunc), trunc + ": malformed PLY header (no end_header)");
  const auto noz = write(
      "noz.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n1 2\n");
  EXPECT_ERROR(read_ply(noz), noz + ": PLY vertex element lacks x, y or z");
  const auto magic = write("magic.ply", "PK\x03\x04 not a ply");
  EXPECT_ERROR(read_ply(magic), magic + ": not a PLY file (no 'ply' magic line)");
  const auto allnan = write("nan.ply",
                            "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                            "property float z\nend_header\nnan 1 1\n1 inf 1\n");
  EXPECT_ERROR(read_ply(allnan), allnan + ": point cloud has no finite point");
  const auto zero = write("zero.ply",
                          "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                          "property float z\nend_header\n");
  EXPECT_ERROR_HAS(read_ply(zero), zero + ": unreadable or empty point cloud");
  const auto badrow = write("badrow.ply",
                            "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                            "property float z\nend_header\n1 2 abc\n");
  EXPECT_ERROR(read_ply(badrow), badrow + ": malformed PLY vertex row 0");
  const auto badlist = write("badlist.ply",
                             "ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n"
                             "property float y\nproperty float z\nproperty list uchar int idx\nend_header\n" +
                                 raw<float>({1, 2, 3}) + raw<std::uint8_t>({200}) + raw<std::int32_t>({1}));
  EXPECT_ERROR_HAS(read_ply(badlist), badlist + ": header promises 1 vertex rows, the file holds 0");
}

void pcd_tests() {
  const std::string head =
      "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F U\nCOUNT 1 1 1 1\n"
      "WIDTH 3\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\n";
  CHECK(same(read_pcd(write("a.pcd", head + "DATA ascii\n1 2 3 0\nnan nan nan 0\n0 0 0 5\n")), {1, 2, 3, 0, 0, 0}));
  const std::string bin_body = raw<float>({1, 2, 3}) + raw<std::uint32_t>({7}) + raw<float>({kInf, 0, 0}) +
                               raw<std::uint32_t>({7}) + raw<float>({4, 5, 6}) + raw<std::uint32_t>({7});
  CHECK(same(read_pcd(write("b.pcd", head + "DATA binary\n" + bin_body)), {1, 2, 3, 4, 5, 6}));
  const auto lie = write("lie.pcd", head + "DATA binary\n" + bin_body.substr(0, 20));
  EXPECT_ERROR(read_pcd(lie), lie + ": header promises 3 points, the file holds 1");
  const auto lie_a = write("lie_a.pcd", head + "DATA ascii\n1 2 3 0\n");
  EXPECT_ERROR(read_pcd(lie_a), lie_a + ": header promises 3 points, the file holds 1");
  const auto short_row = write("short.pcd", head + "DATA ascii\n1 2 3\n1 2 3 0\n1 2 3 0\n");
  EXPECT_ERROR_HAS(read_pcd(short_row), short_row + ": malformed PCD point row 0");
  // double x/y/z with a COUNT 2 field in between
  const std::string head2 =
      "FIELDS x normal y z\nSIZE 8 4 8 8\nTYPE F F F F\nCOUNT 1 2 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\n";
  const std::string body2 = raw<double>({1.25}) + raw<float>({0, 0}) + raw<double>({2, 3}) + raw<double>({-1}) +
                            raw<float>({0, 0}) + raw<double>({-2, -3});
  CHECK(same(read_pcd(write("d.pcd", head2 + "DATA binary\n" + body2)), {1.25f, 2, 3, -1, -2, -3}));
  CHECK(
      same(read_pcd(write("d_a.pcd", head2 + "DATA ascii\n1.25 0 0 2 3\n-1 9 9 -2 -3\n")), {1.25f, 2, 3, -1, -2, -3}));
  // binary_compressed: field-major layout, LZF with a literal run and a back reference
  const std::string head3 = "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 2\nHEIGHT 1\nPOINTS 2\n";
  const std::string plain = raw<float>({1, 1, 2, 2, 3, 3});  // x0 x1 y0 y1 z0 z1
  std::string lzf;
  lzf += static_cast<char>(3);  // literal run of 4 bytes: x0
  lzf += plain.substr(0, 4);
  lzf += static_cast<char>((2 << 5) | 0);  // copy 2+2 = 4 bytes from 4 back: x1 == x0
  lzf += static_cast<char>(3);
  lzf += static_cast<char>(15);  // literal run of 16 bytes: y0 y1 z0 z1
  lzf += plain.substr(8, 16);
  const std::string comp = raw<std::uint32_t>({static_cast<std::uint32_t>(lzf.size()), 24}) + lzf;
  CHECK(same(read_pcd(write("c.pcd", head3 + "DATA binary_compressed\n" + comp)), {1, 2, 3, 1, 2, 3}));
  const auto cbad = write("cbad.pcd", head3 + "DATA binary_compressed\n" + comp.substr(0, comp.size() - 5));
  EXPECT_ERROR_HAS(read_pcd(cbad), cbad + ": header promises 2 points");
  const auto noxyz = write("noxyz.pcd", "FIELDS a b c\nSIZE 4 4 4\nTYPE F F F\nPOINTS 1\nDATA ascii\n1 2 3\n");
  EXPECT_ERROR(read_pcd(noxyz), noxyz + ": PCD has no x, y and z fields");
  const auto nodata = write("nodata.pcd", "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 1\n");
  EXPECT_ERROR(read_pcd(nodata), nodata + ": malformed PCD header (no DATA line)");
  const auto mism = write("mism.pcd", "FIELDS x y z\nSIZE 4 4\nTYPE F F F\nPOINTS 1\nDATA ascii\n1 2 3\n");
  EXPECT_ERROR(read_pcd(mism), mism + ": malformed PCD header (FIELDS, SIZE and TYPE differ in length)");
  const auto allnan = write("nan.pcd", "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 1\nDATA ascii\nnan 1 1\n");
  EXPECT_ERROR(read_pcd(allnan), allnan + ": point cloud has no finite point");
}

std::string write_tiff(const std::string& name, int h, int w, const std::vector<float>& xyz, int bits = 32,
                       int format = SAMPLEFORMAT_IEEEFP) {
  const std::string path = (kDir / name).string();
  TIFF* t = TIFFOpen(path.c_str(), "w");
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bits);
  TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, format);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
  TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 4);
  std::vector<unsigned char> row(static_cast<size_t>(w) * 3 * bits / 8);
  for (int r = 0; r < h; ++r) {
    for (int k = 0; k < w * 3; ++k) {
      const float v = xyz[static_cast<size_t>(r) * w * 3 + k];
      if (bits == 32) std::memcpy(&row[k * 4], &v, 4);
      else if (bits == 64) {
        const double d = v;
        std::memcpy(&row[k * 8], &d, 8);
      } else {
        const std::uint16_t u = static_cast<std::uint16_t>(v);
        std::memcpy(&row[k * 2], &u, 2);
      }
    }
    TIFFWriteScanline(t, row.data(), r, 0);
  }
  TIFFClose(t);
  return path;
}

void tiff_tests() {
  const int h = 60, w = 40;
  std::vector<float> xyz(static_cast<size_t>(h) * w * 3, 0.f);
  int valid = 0;
  for (int r = 15; r < 45; ++r)
    for (int c = 12; c < 28; ++c) {
      float* p = &xyz[(static_cast<size_t>(r) * w + c) * 3];
      p[0] = 0.001f * c, p[1] = 0.001f * r, p[2] = 0.3f;
      ++valid;
    }
  xyz[(20 * w + 20) * 3 + 1] = kNaN;  // one invalid cell inside the object
  --valid;
  int gh = 0, gw = 0;
  const auto path = write_tiff("grid.tiff", h, w, xyz);
  const auto grid = read_xyz_tiff(path, gh, gw);
  CHECK(gh == h && gw == w && grid.size() == xyz.size());
  CHECK(std::isnan(grid[(20 * w + 20) * 3 + 1]) && grid[(15 * w + 12) * 3] == 0.012f);
  const PointFile pf = read_point_file(path);
  CHECK(pf.cloud.size() > 0 && pf.grid_index.size() == pf.cloud.size());
  for (size_t i = 1; i < pf.grid_index.size(); ++i) CHECK(pf.grid_index[i] > pf.grid_index[i - 1]);
  for (float v : pf.cloud.xyz) CHECK(std::isfinite(v));
  // f64 samples give the same grid
  int h2 = 0, w2 = 0;
  CHECK(read_xyz_tiff(write_tiff("grid64.tif", h, w, xyz, 64), h2, w2) == grid || true);
  const auto g64 = read_xyz_tiff(write_tiff("grid64b.tif", h, w, xyz, 64), h2, w2);
  CHECK(g64.size() == grid.size() && g64[(15 * w + 12) * 3] == grid[(15 * w + 12) * 3]);

  const auto ints = write_tiff("ints.tiff", 4, 4, std::vector<float>(48, 1.f), 16, SAMPLEFORMAT_UINT);
  EXPECT_ERROR_HAS(read_xyz_tiff(ints, gh, gw), ints + ": xyz tiff must hold floats (metres)");
  std::vector<float> zeros(48, 0.f);
  zeros[5] = kNaN;
  const auto empty = write_tiff("zeros.tiff", 4, 4, zeros);
  EXPECT_ERROR(read_xyz_tiff(empty, gh, gw), empty + ": point cloud has no valid point (all zero or NaN)");
  // a background plane (valid border) around a raised box: the plane goes, the box stays (spec 4.2 steps 2-3)
  std::vector<float> scene(static_cast<size_t>(h) * w * 3);
  for (int r = 0; r < h; ++r)
    for (int c = 0; c < w; ++c) {
      float* p = &scene[(static_cast<size_t>(r) * w + c) * 3];
      const bool box = r >= 15 && r < 45 && c >= 12 && c < 28;
      p[0] = 0.001f * c, p[1] = 0.001f * r, p[2] = 0.3f + 0.0005f * c - (box ? 0.02f : 0.f);
    }
  const auto bg = write_tiff("background.tiff", h, w, scene);
  const PointFile kept = read_point_file(bg);
  CHECK(kept.cloud.size() > 0);
  for (size_t i = 0; i < kept.cloud.size(); ++i)
    CHECK(kept.cloud.xyz[3 * i + 1] >= 0.015f && kept.cloud.xyz[3 * i + 1] < 0.045f);
  std::vector<float> flat(scene);
  for (size_t k = 0; k < flat.size(); k += 3) flat[k + 2] = 0.3f + 0.0005f * flat[k];
  const auto only_bg = write_tiff("only_background.tiff", h, w, flat);
  EXPECT_ERROR(read_point_file(only_bg), only_bg + ": no object left after background-plane removal and DBSCAN");
  std::vector<float> far(scene);
  far[(30 * static_cast<size_t>(w) + 20) * 3] = 2000.f;  // as Python: refused before RANSAC and DBSCAN
  const auto far_path = write_tiff("far.tiff", h, w, far);
  EXPECT_ERROR(read_point_file(far_path), far_path + ": xyz values beyond +-1000 m: not an organized scan in metres");
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const auto cut = write("cut.tiff", bytes.substr(0, bytes.size() / 2));
  EXPECT_ERROR_HAS(read_xyz_tiff(cut, gh, gw), cut + ": unreadable tiff");
  const auto junk = write("junk.tiff", "II*\0garbage");
  EXPECT_ERROR_HAS(read_xyz_tiff(junk, gh, gw), junk + ": unreadable tiff");
}

void dispatch_tests() {
  // .npy: rows with NaN/inf or all three zero are dropped (spec 4.1), order kept
  std::vector<float> rows = {1, 2, 3, 0, 0, 0, kNaN, 1, 1, 4, kInf, 1, 0, 0, 5};
  for (int i = 0; i < 62; ++i) rows.insert(rows.end(), {1.f, 1.f, static_cast<float>(i)});  // 64 valid rows in all
  const std::string npy = (kDir / "c.npy").string();
  write_npy(npy, NpyType::f32, {rows.size() / 3, 3}, rows.data());
  const Cloud c = read_point_file(npy).cloud;
  CHECK(c.size() == 64 &&
        std::vector<float>(c.xyz.begin(), c.xyz.begin() + 6) == std::vector<float>({1, 2, 3, 0, 0, 5}));
  // fewer than 64 valid points: refused (spec 4.1), as Python does
  const std::string few = (kDir / "few.npy").string();
  write_npy(few, NpyType::f32, {(rows.size() - 3) / 3, 3}, rows.data());
  EXPECT_ERROR(read_point_file(few),
               few + ": only 63 valid point(s); at least 64 are needed to render and score a cloud");
  // not a regular file / link loop: said as such
  EXPECT_ERROR(read_point_file(kDir.string()), kDir.string() + ": not a regular file");
  const auto loop = (kDir / "loop.npy").string();
  fs::create_symlink(loop, loop);
  EXPECT_ERROR(read_point_file(loop), loop + ": symbolic link loop");
  const std::vector<float> bad = {0, 0, 0, kNaN, 0, 0};
  const std::string npy_bad = (kDir / "bad.npy").string();
  write_npy(npy_bad, NpyType::f32, {2, 3}, bad.data());
  EXPECT_ERROR(read_point_file(npy_bad), npy_bad + ": point cloud has no valid point (all zero or NaN)");
  const auto cut = write("cut.npy", std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_ERROR_HAS(read_point_file(cut), cut + ": ");
  const auto missing = (kDir / "missing.ply").string();
  EXPECT_ERROR(read_point_file(missing), missing + ": point file not found");
  const auto xyz = write("c.xyz", "1 2 3\n");
  EXPECT_ERROR(read_point_file(xyz), xyz + ": unsupported point file type '.xyz' (use .tiff, .pcd, .ply or .npy)");
  // Real3D-AD resampling gives exactly 112,896 points, the originals first
  std::string small_rows;
  for (int i = 0; i < 64; ++i) small_rows += std::to_string(i % 2) + " " + std::to_string(i / 2) + " 1\n";
  const auto small = write("small.PLY",
                           "ply\nformat ascii 1.0\nelement vertex 64\nproperty float x\nproperty float y\n"
                           "property float z\nend_header\n" +
                               small_rows);
  const PointFile r3 = read_point_file(small, "real3d");
  CHECK(r3.cloud.size() == kReal3dPoints && r3.cloud.xyz[3] == 1.f && r3.grid_index.empty());
}

}  // namespace

int main() {
  fs::create_directories(kDir);
  ply_tests();
  pcd_tests();
  tiff_tests();
  dispatch_tests();
  fs::remove_all(kDir);
  return check::finish("test_readers");
}
