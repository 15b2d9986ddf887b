// Atomic output files: everything is first written under a temporary name in the target folder,
// then renamed into place only once every file of the run has been written.
#pragma once

#include <cstdint>
#include <set>
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

/// Unique output keys (runtime-spec §9, the rule Python's data/files.py applies): a key already taken
/// becomes KEY_n with the smallest free n >= 1, counting every key given so far (a, a, a_1 -> a, a_1, a_1_1).
std::vector<std::string> unique_keys(const std::vector<std::string>& keys);

/// One input of a run: the point file and its output key.
struct InputFile {
  std::string file, key;
};

/// Python's data/files.py collect_files (runtime-spec §9): every given file (key = its stem) and every
/// point file below every given folder D (sorted, recursive, hidden paths and files below `exclude`
/// skipped; key = D's name + "__" + the relative path without its suffix, parts joined by "__"), keys
/// then made unique by unique_keys. A missing path or a folder without point files throws "PATH: problem".
std::vector<InputFile> collect_inputs(const std::vector<std::string>& paths, const std::string& exclude);

/// The --out folder of align3d-inspect (the rules of Python's cli/out_folder.py): a new or empty folder,
/// or with `overwrite` a folder holding only an earlier align3d-inspect output (its scores.json and
/// the files it lists); never the bundle's folder or a folder inside it; locked (flock on the folder
/// itself, as Python does) while written. Refusals throw align3d::Error "DIR: problem".
class OutputFolder {
 public:
  OutputFolder(std::string dir, std::string bundle_dir, bool overwrite);
  ~OutputFolder();  // unlocks; removes the folder again if this run created it and it is still empty
  OutputFolder(const OutputFolder&) = delete;
  OutputFolder& operator=(const OutputFolder&) = delete;
  /// Every refusal that needs no lock (call before any work).
  void check() const;
  /// Create the folder if needed and lock it; the checks run again under the lock.
  void open();
  /// open()'s two steps, apart for tests (another run can lock the folder between them): create() makes
  /// the folder when it does not exist; lock() takes the lock. A run that created the folder but lost the
  /// lock to another run leaves it in place (it is the other run's now).
  void create();
  void lock();
  /// The files an earlier align3d-inspect run wrote here: its scores.json and the files it lists.
  std::set<std::string> earlier_outputs() const;
  /// After the new files are in place (--overwrite): delete the `earlier` files that were not replaced.
  void remove_earlier_outputs(const std::set<std::string>& earlier, const std::set<std::string>& new_names) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_, bundle_;
  bool overwrite_;
  bool created_ = false;
  int fd_ = -1;
};

/// PNG bytes (libpng) of V square RGB views tiled in rows of `per_row`.
std::vector<std::uint8_t> views_png(const std::vector<std::uint8_t>& images, int views, int size, int per_row = 3);

}  // namespace align3d
