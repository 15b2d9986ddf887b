// Atomic output files: everything is first written under a temporary name in the target folder,
// then renamed into place only once every file of the run has been written.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace align3d {

class StagedOutputs {
 public:
  explicit StagedOutputs(std::string dir) : dir_(std::move(dir)) {}
  ~StagedOutputs();  // removes temporaries that were not committed
  void add_bytes(const std::string& name, const std::vector<std::uint8_t>& bytes);
  void add_text(const std::string& name, const std::string& text);
  /// Renames every staged file into place (throws align3d::Error "PATH: problem").
  void commit();

 private:
  std::string dir_;
  std::vector<std::pair<std::string, std::string>> staged_;  // (temporary, final)
};

/// PNG bytes (libpng) of V square RGB views tiled in rows of `per_row`.
std::vector<std::uint8_t> views_png(const std::vector<std::uint8_t>& images, int views, int size, int per_row = 3);

}  // namespace align3d
