// Render settings checks and per-dataset overrides (spec §2.2, §5.1).
#include <cmath>
#include <stdexcept>

#include "align3d/geometry.hpp"

namespace align3d {

void check_settings(const RenderSettings& s) {
  view_preset(s.preset);  // throws for an unknown preset
  if (s.image_size < 1) throw std::invalid_argument("image_size must be >= 1, got " + std::to_string(s.image_size));
  if (s.window < 1) throw std::invalid_argument("window must be >= 1, got " + std::to_string(s.window));
  if (!std::isfinite(s.gray)) throw std::invalid_argument("gray must be finite");
}

bool is_known_dataset(const std::string& d) {
  return d == "mvtec3d" || d == "synthetic" || d == "eyecandies" || d == "real3d";
}

namespace {

int mvtec_point_size(const std::string& category) {
  static const struct {
    const char* name;
    int size;
  } table[] = {
      {"bagel", 7}, {"cable_gland", 12}, {"carrot", 7}, {"cookie", 6}, {"dowel", 10},
      {"foam", 8},  {"peach", 7},        {"potato", 8}, {"rope", 5},   {"tire", 8},
  };
  for (const auto& row : table)
    if (category == row.name) return row.size;
  return 8;
}

}  // namespace

RenderSettings settings_for_dataset(const RenderSettings& base, const std::string& dataset,
                                    const std::string& category) {
  RenderSettings out = base;
  if (dataset == "mvtec3d" || dataset == "synthetic") {
    out.point_size = mvtec_point_size(category);
    out.window = 1024;
  } else if (dataset == "eyecandies") {
    out.point_size = 10;
    out.window = 1036;
  } else if (dataset == "real3d") {
    out.point_size = 12;
    out.window = 1036;
  }
  return out;
}

}  // namespace align3d
