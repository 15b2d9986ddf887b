#include "outputs.hpp"

#include <png.h>
#include <unistd.h>

#include <algorithm>
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
