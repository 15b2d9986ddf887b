// align3d_read_points [--dataset D] --out DIR FILE...: read point files with the inspector's readers
// (read_point_file, spec 4.1) and report, one line per file on stdout: "I ok N" (and DIR/I.npy, the
// (N,3) f32 points) or "I error MESSAGE". For tests that feed the same files to Python and C++.
#include <iostream>
#include <string>
#include <vector>

#include "align3d/inspector.hpp"
#include "align3d/npy.hpp"
#include "readers.hpp"

int main(int argc, char** argv) {
  std::string out, dataset;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--out" || a == "--dataset") && i + 1 < argc) (a == "--out" ? out : dataset) = argv[++i];
    else
      files.push_back(a);
  }
  if (out.empty()) {
    std::cerr << "usage: align3d_read_points [--dataset D] --out DIR FILE...\n";
    return 2;
  }
  for (size_t k = 0; k < files.size(); ++k) {
    try {
      const align3d::PointFile pf = align3d::read_point_file(files[k], dataset);
      align3d::write_npy(out + "/" + std::to_string(k) + ".npy", align3d::NpyType::f32, {pf.cloud.size(), 3},
                         pf.cloud.xyz.data());
      std::cout << k << " ok " << pf.cloud.size() << "\n";
    } catch (const std::exception& err) {
      std::cout << k << " error " << err.what() << "\n";
    }
  }
  return 0;
}
