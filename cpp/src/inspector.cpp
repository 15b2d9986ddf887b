// Inspector: verified bundle + compiled encoder, then render -> encode -> back-project -> score.
#include "align3d/inspector.hpp"

#include <chrono>
#include <cmath>
#include <mutex>

#include "align3d/geometry.hpp"
#include "bundle.hpp"
#include "encoder.hpp"

namespace align3d {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

struct Inspector::Impl {
  BundleInfo bundle;
  RenderSettings settings;  // the bundle's, with the dataset's point size / window (spec 5.1)
  std::unique_ptr<Encoder> encoder;
  std::string precision, model_file, compute_precision;
  std::string dataset, category;             // options' or, when empty, the calibration's
  std::unique_ptr<Calibration> calibration;  // spec 13.2, checked against this bundle
  mutable std::mutex encoder_mutex;          // one OpenVINO infer request: calls are serialised
  StartupTimings startup;
};

Inspector::Inspector(const std::string& bundle_dir, const InspectorOptions& options) : impl_(std::make_unique<Impl>()) {
  std::string dataset = options.dataset, category = options.category;
  if (!options.calibration.empty()) {  // as Python's infer: the calibration first, its source once the bundle is known
    impl_->calibration = std::make_unique<Calibration>(load_calibration(options.calibration));
    apply_calibration_choices(*impl_->calibration, dataset, category);
  }
  impl_->dataset = dataset;
  impl_->category = category;
  // The OpenVINO route reads only the IR: its files are hashed first, the rest of the bundle (the ONNX
  // graph) hashes in the background while the IR compiles, and is checked before the constructor
  // returns, the first problem in sorted order as the sequential check (spec 2.4). (A warm-up call on
  // blank views here cost a whole inference, more than the first call's own extra: measured, dropped.)
  PendingFiles pending;
  auto t0 = std::chrono::steady_clock::now();
  impl_->bundle = load_bundle(bundle_dir, options.backend == "openvino", pending);
  impl_->startup.load_bundle = seconds_since(t0);
  try {
    try {
      impl_->settings = settings_for_dataset(impl_->bundle.render, dataset, category);
    } catch (const std::invalid_argument& err) {
      throw Error("--dataset: " + std::string(err.what()));
    }
    if (impl_->calibration) {
      check_calibration_source(*impl_->calibration, impl_->bundle.manifest.value("manifest_sha256", ""));
      check_calibration_scoring(*impl_->calibration);
    }
    t0 = std::chrono::steady_clock::now();
    impl_->encoder = make_encoder(impl_->bundle, options);
    impl_->startup.load_encoder = seconds_since(t0);
  } catch (...) {
    pending.finish();  // a file problem comes first (spec 2.6 order)
    throw;
  }
  t0 = std::chrono::steady_clock::now();
  pending.finish();
  impl_->startup.wait_files = seconds_since(t0);
  impl_->precision = impl_->encoder->precision();
  impl_->model_file = impl_->encoder->model_file();
  impl_->compute_precision = impl_->encoder->compute_precision();
}

Inspector::~Inspector() = default;
Inspector::Inspector(Inspector&&) noexcept = default;
Inspector& Inspector::operator=(Inspector&&) noexcept = default;

int Inspector::num_views() const { return static_cast<int>(view_preset(impl_->settings.preset).size()); }
int Inspector::image_size() const { return impl_->settings.image_size; }
double Inspector::fusion_weight() const { return impl_->bundle.fusion_weight; }
const std::string& Inspector::precision() const { return impl_->precision; }
const std::string& Inspector::model_file() const { return impl_->model_file; }
const std::string& Inspector::compute_precision() const { return impl_->compute_precision; }
const std::string& Inspector::bundle_hash() const { return impl_->bundle.onnx_sha256; }
const std::string& Inspector::dataset() const { return impl_->dataset; }
const std::string& Inspector::category() const { return impl_->category; }
const Calibration* Inspector::calibration() const { return impl_->calibration.get(); }
const StartupTimings& Inspector::startup_timings() const { return impl_->startup; }

ScoreResult Inspector::score(const std::vector<float>& points, bool keep_images) const {
  const size_t n = points.size() / 3;
  if (n == 0 || points.size() % 3 != 0) throw Error("points: need N >= 1 points as N*3 floats");
  for (float v : points)
    if (!std::isfinite(v)) throw Error("points: every coordinate must be finite");
  const Impl& im = *impl_;
  const int g = im.bundle.grid_size, s = im.settings.image_size;
  ScoreResult r;
  auto t0 = std::chrono::steady_clock::now();
  RenderedViews views;
  try {
    views = render_views(points.data(), n, im.settings);
  } catch (const std::invalid_argument& err) {
    throw Error(std::string("points: ") + err.what());
  }
  r.timings.render = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  EncoderOutput enc;
  {
    std::lock_guard<std::mutex> lock(im.encoder_mutex);
    enc = im.encoder->infer(views.images.data(), views.views, s, g);
  }
  r.timings.encode = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  r.point_scores = backproject(enc.patch_maps.data(), views.views, g, views.pixels.data(), views.visible.data(), n, s,
                               im.bundle.fusion_weight);
  r.timings.backproject = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  r.object_score =
      object_score(r.point_scores.data(), n, enc.global_probs.data(), views.views, im.bundle.fusion_weight);
  float peak = r.point_scores[2];
  for (size_t i = 1; i < n; ++i) peak = std::max(peak, r.point_scores[3 * i + 2]);
  r.max_point_score = peak;
  if (im.calibration) {
    std::vector<float> fused(n);
    for (size_t i = 0; i < n; ++i) fused[i] = r.point_scores[3 * i + 2];
    r.decision = decide(*im.calibration, points.data(), fused.data(), n, r.object_score);
    r.decided = true;
  }
  r.timings.score = seconds_since(t0);
  r.global_probs = std::move(enc.global_probs);
  r.num_views = views.views;
  r.image_size = s;
  if (keep_images) r.images = std::move(views.images);
  return r;
}

}  // namespace align3d
