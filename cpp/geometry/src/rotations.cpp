// View presets and rotation matrices (spec §5.2).
#include <cmath>
#include <stdexcept>

#include "align3d/geometry.hpp"

namespace align3d {

std::vector<ViewRotation> view_preset(const std::string& preset) {
  std::vector<ViewRotation> views;
  if (preset == "paper9") {
    for (double d : {-144.0, -108.0, -72.0, -36.0, 0.0, 36.0, 72.0, 108.0, 144.0}) views.push_back({'x', d});
  } else if (preset == "mvtec9") {
    for (double d : {-45.0, -15.0, 0.0, 15.0, 45.0}) views.push_back({'x', d});
    for (double d : {-30.0, -15.0, 15.0, 30.0}) views.push_back({'y', d});
  } else if (preset == "eyecandies9") {
    for (double d : {-30.0, -15.0, 0.0, 10.0, 20.0}) views.push_back({'x', d});
    for (double d : {-30.0, -15.0, 15.0, 30.0}) views.push_back({'y', d});
  } else {
    throw std::invalid_argument("unknown view preset '" + preset + "'; known: paper9, mvtec9, eyecandies9");
  }
  return views;
}

Mat3 axis_rotation(char axis, double degrees) {
  const double pi = 3.141592653589793;
  const double t = degrees * (pi / 180.0);  // Python math.radians
  const double c = std::cos(t), s = std::sin(t);
  switch (axis) {
    case 'x': return {1, 0, 0, 0, c, -s, 0, s, c};
    case 'y': return {c, 0, s, 0, 1, 0, -s, 0, c};
    case 'z': return {c, -s, 0, s, c, 0, 0, 0, 1};
    default: break;
  }
  throw std::invalid_argument(std::string("unknown rotation axis '") + axis + "'");
}

std::vector<Mat3> view_rotations(const std::string& preset) {
  const Mat3 flip = axis_rotation('x', 180.0);
  std::vector<Mat3> out;
  for (const ViewRotation& view : view_preset(preset)) {
    const Mat3 a = axis_rotation(view.axis, view.degrees);
    Mat3 r{};
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j)
        r[3 * i + j] = (a[3 * i] * flip[j] + a[3 * i + 1] * flip[3 + j]) + a[3 * i + 2] * flip[6 + j];
    out.push_back(r);
  }
  return out;
}

}  // namespace align3d
