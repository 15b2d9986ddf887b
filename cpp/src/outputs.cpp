#include "outputs.hpp"

#include <fcntl.h>
#include <png.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <system_error>

#include <algorithm>
#include <cctype>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "align3d/inspector.hpp"

namespace align3d {
namespace fs = std::filesystem;

StagedOutputs::~StagedOutputs() {
  for (const auto& [tmp, final_name] : staged_) {
    std::error_code ec;
    fs::remove(tmp, ec);
  }
}

void StagedOutputs::add_bytes(const std::string& name, const std::vector<std::uint8_t>& bytes) {
  const std::string final_path = dir_ + "/" + name;
  const std::string tmp = dir_ + "/." + name + ".tmp-" + std::to_string(::getpid());
  staged_.emplace_back(tmp, final_path);
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw Error(final_path + ": cannot write (" + std::strerror(errno) + ")");
}

void StagedOutputs::add_text(const std::string& name, const std::string& text) {
  add_bytes(name, std::vector<std::uint8_t>(text.begin(), text.end()));
}

void StagedOutputs::commit() {
  for (const auto& [tmp, final_path] : staged_)
    if (std::rename(tmp.c_str(), final_path.c_str()) != 0)
      throw Error(final_path + ": cannot move into place (" + std::strerror(errno) + ")");
  staged_.clear();
}

std::vector<std::string> unique_keys(const std::vector<std::string>& keys) {
  std::set<std::string> taken;
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (const auto& key : keys) {
    std::string unique = key;
    for (int n = 1; taken.count(unique); ++n) unique = key + "_" + std::to_string(n);
    taken.insert(unique);
    out.push_back(unique);
  }
  return out;
}

namespace {

bool below(const fs::path& file, const fs::path& folder) {
  std::error_code ec;
  const fs::path f = fs::weakly_canonical(file, ec), d = fs::weakly_canonical(folder, ec);
  auto fi = f.begin(), di = d.begin();
  for (; di != d.end(); ++di, ++fi)
    if (fi == f.end() || *fi != *di) return false;
  return true;
}

bool is_point_suffix(std::string suffix) {
  std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](unsigned char c) { return std::tolower(c); });
  return suffix == ".tiff" || suffix == ".tif" || suffix == ".pcd" || suffix == ".ply" || suffix == ".npy";
}

std::string folder_name(const std::string& given) {  // Python: Path(given).name or "input"
  std::string s = fs::path(given).lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  const std::string name = fs::path(s).filename().string();
  return (name.empty() || name == "." || name == "/") ? "input" : name;
}

}  // namespace

std::vector<InputFile> collect_inputs(const std::vector<std::string>& paths, const std::string& exclude) {
  std::vector<InputFile> found;
  std::error_code ec;
  for (const auto& given : paths) {
    if (fs::is_directory(given, ec)) {
      std::vector<fs::path> files;
      for (auto it = fs::recursive_directory_iterator(given, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec)) {
        const fs::path rel = it->path().lexically_relative(given);
        bool hidden = false;
        for (const auto& part : rel) hidden = hidden || part.string().rfind(".", 0) == 0;
        if (hidden) {
          if (it->is_directory(ec)) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file(ec) && is_point_suffix(it->path().extension().string()) &&
            !(!exclude.empty() && below(it->path(), exclude)))
          files.push_back(it->path());
      }
      if (ec) throw Error(given + ": cannot list this folder (" + ec.message() + ")");
      if (files.empty()) throw Error(given + ": no point-cloud files (.tiff, .tif, .pcd, .ply, .npy) in this folder");
      std::sort(files.begin(), files.end());
      const std::string base = folder_name(given);
      for (const auto& f : files) {
        fs::path rel = f.lexically_relative(given);
        rel.replace_extension();
        std::string key = base;
        for (const auto& part : rel) key += "__" + part.string();
        found.push_back({f.string(), key});
      }
    } else if (fs::is_regular_file(given, ec)) {
      found.push_back({given, fs::path(given).stem().string()});
    } else {  // the messages of readers.cpp path_problem (Python: data/files.py via point_files.path_problem)
      const auto st = fs::status(given, ec);
      if (ec && ec.value() == ELOOP) throw Error(given + ": symbolic link loop");
      if (st.type() == fs::file_type::not_found || (ec && (ec.value() == ENOENT || ec.value() == ENOTDIR)))
        throw Error(given + ": point file not found");
      if (ec) throw Error(given + ": cannot open the point file (" + std::strerror(ec.value()) + ")");
      throw Error(given + ": not a regular file");
    }
  }
  std::vector<std::string> keys;
  for (const auto& f : found) keys.push_back(f.key);
  keys = unique_keys(keys);
  for (size_t i = 0; i < found.size(); ++i) found[i].key = keys[i];
  return found;
}

namespace {

bool is_plain_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos;
}

// ".NAME.tmp-PID": a temporary StagedOutputs left when a run was killed.
bool is_staged_leftover(const std::string& entry, const std::set<std::string>& owned) {
  const auto at = entry.rfind(".tmp-");
  if (entry.empty() || entry[0] != '.' || at == std::string::npos || at + 5 >= entry.size()) return false;
  if (entry.find_first_not_of("0123456789", at + 5) != std::string::npos) return false;
  return owned.count(entry.substr(1, at - 1)) > 0;
}

bool inside(const fs::path& path, const fs::path& folder) {
  std::error_code ec;
  const fs::path p = fs::weakly_canonical(path, ec), f = fs::weakly_canonical(folder, ec);
  auto pi = p.begin(), fi = f.begin();
  for (; fi != f.end(); ++fi, ++pi)
    if (pi == p.end() || *pi != *fi) return false;
  return true;
}

}  // namespace

OutputFolder::OutputFolder(std::string dir, std::string bundle_dir, bool overwrite)
    : dir_(std::move(dir)), bundle_(std::move(bundle_dir)), overwrite_(overwrite) {}

OutputFolder::~OutputFolder() {
  if (created_) {  // still under the lock; only when empty: nothing of a failed start stays
    std::error_code ec;
    if (fs::is_empty(dir_, ec) && !ec) fs::remove(dir_, ec);
  }
  if (fd_ >= 0) {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
}

std::set<std::string> OutputFolder::earlier_outputs() const {
  std::ifstream in(dir_ + "/scores.json");
  if (!in) return {};
  const auto data = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!data.is_object() || !data.contains("inspector") || !data.contains("samples") || !data.contains("failed") ||
      !data["samples"].is_object())
    return {};
  std::set<std::string> owned{"scores.json"};
  for (const auto& [key, sample] : data["samples"].items()) {
    if (!sample.is_object() || !sample.contains("outputs") || !sample["outputs"].is_object()) continue;
    for (const auto& [what, name] : sample["outputs"].items())
      if (name.is_string() && is_plain_name(name.get<std::string>())) owned.insert(name.get<std::string>());
  }
  return owned;
}

void OutputFolder::check() const {
  std::error_code ec;
  const auto status = fs::symlink_status(dir_, ec);
  if (fs::exists(status) && !fs::is_directory(fs::status(dir_, ec)))
    throw Error(dir_ + ": --out exists and is not a folder; choose another --out");
  if (inside(dir_, bundle_))
    throw Error(dir_ + ": is the bundle's folder or inside it; choose an --out outside the bundle");
  fs::path probe = dir_;
  while (!fs::exists(probe, ec) && probe.has_parent_path() && probe.parent_path() != probe) probe = probe.parent_path();
  if (!fs::exists(probe, ec)) probe = ".";
  if (!fs::is_directory(probe, ec))
    throw Error(dir_ + ": cannot create the output folder (" + probe.string() + " is a file, not a folder)");
  if (::access(probe.c_str(), W_OK | X_OK) != 0)
    throw Error(dir_ + ": cannot write the output folder (" + probe.string() + " is not writable)");
  if (!fs::is_directory(dir_, ec) || fs::is_empty(dir_, ec)) return;
  size_t entries = 0;
  for (auto it = fs::directory_iterator(dir_, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) ++entries;
  if (!overwrite_)
    throw Error(dir_ + ": output folder is not empty (" + std::to_string(entries) +
                " entries); pass --overwrite to replace an earlier align3d-inspect output, or choose a new --out");
  const auto owned = earlier_outputs();
  if (owned.empty())
    throw Error(dir_ + ": not an align3d-inspect output folder (no scores.json of ours); its " +
                std::to_string(entries) + " entries are never deleted: choose a new or empty --out");
  std::vector<std::string> foreign;
  for (auto it = fs::directory_iterator(dir_, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const bool file = it->is_regular_file(ec) && !it->is_symlink(ec);
    if (!file || !(owned.count(name) || is_staged_leftover(name, owned))) foreign.push_back(name);
  }
  if (!foreign.empty()) {
    std::sort(foreign.begin(), foreign.end());
    throw Error(dir_ + ": holds " + std::to_string(foreign.size()) + " entr" + (foreign.size() == 1 ? "y" : "ies") +
                " align3d-inspect did not write (e.g. " + foreign[0] +
                "); --overwrite deletes only its own earlier output: move them, or choose a new or empty --out");
  }
}

void OutputFolder::open() {
  check();
  create();
  lock();
}

void OutputFolder::create() {
  std::error_code ec;
  const fs::path parent = fs::path(dir_).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  if (::mkdir(dir_.c_str(), 0777) == 0) created_ = true;  // by this run: of two runs racing here only one creates it
  else if (errno != EEXIST)
    throw Error(dir_ + ": cannot create the output folder (" + std::strerror(errno) + ")");
}

void OutputFolder::lock() {
  fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd_ < 0) throw Error(dir_ + ": cannot open the output folder (" + std::strerror(errno) + ")");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    // Another run locked it between this run's mkdir and here: the folder is that run's now, and the
    // destructor must not remove it (it is empty only until that run writes). As Python's OutputFolder.
    created_ = false;
    ::close(fd_);
    fd_ = -1;
    throw Error(dir_ +
                ": another run is writing this output folder (it is locked); wait for it or choose another --out");
  }
  check();  // again under the lock: another run may have written here meanwhile
}

void OutputFolder::remove_earlier_outputs(const std::set<std::string>& earlier,
                                          const std::set<std::string>& new_names) const {
  if (!overwrite_) return;
  std::error_code ec;
  std::vector<fs::path> doomed;
  for (auto it = fs::directory_iterator(dir_, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const bool ours = earlier.count(name) || is_staged_leftover(name, earlier);
    if (ours && !new_names.count(name) && it->is_regular_file(ec) && !it->is_symlink(ec)) doomed.push_back(it->path());
  }
  for (const auto& path : doomed) fs::remove(path, ec);
}

namespace {
void png_append(png_structp png, png_bytep data, png_size_t len) {
  auto* out = static_cast<std::vector<std::uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + len);
}
void png_flush_noop(png_structp) {}
}  // namespace

std::vector<std::uint8_t> views_png(const std::vector<std::uint8_t>& images, int views, int size, int per_row) {
  const int cols = std::min(views, per_row), rows = (views + per_row - 1) / per_row;
  const size_t width = static_cast<size_t>(cols) * size, height = static_cast<size_t>(rows) * size;
  std::vector<std::uint8_t> canvas(width * height * 3, 255);
  for (int v = 0; v < views; ++v) {
    const size_t ox = static_cast<size_t>(v % per_row) * size, oy = static_cast<size_t>(v / per_row) * size;
    for (int y = 0; y < size; ++y)
      std::memcpy(&canvas[((oy + y) * width + ox) * 3], &images[((static_cast<size_t>(v) * size + y) * size) * 3],
                  static_cast<size_t>(size) * 3);
  }
  std::vector<std::uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw Error("png: libpng failed to encode the views");
  }
  png_set_write_fn(png, &out, png_append, png_flush_noop);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (size_t y = 0; y < height; ++y) png_write_row(png, &canvas[y * width * 3]);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

}  // namespace align3d
