// OpenVINO C++ backend: compiles the bundle's IR (encoder.xml/.bin), or its ONNX graph when the
// bundle has no IR, once (through OpenVINO's model cache); runs all V views of a sample in one
// reused infer request (THROUGHPUT: one per stream, the views split over them). Same settings as
// Python's runtime/openvino_backend.py: LATENCY hint by default, compute precision "auto" = bf16
// where the device reports BF16 (AVX512-BF16 / AMX), else f32.
#include <openvino/openvino.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <system_error>

#include "encoder.hpp"

namespace align3d {
namespace {

std::string first_line(const std::string& text) {
  const auto pos = text.find('\n');
  return pos == std::string::npos ? text : text.substr(0, pos);
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

/// "auto", "bf16", "f16" or "f32" (Python: normalise_precision_hint, with its fp32/fp16/bfloat16 spellings).
std::string normalised_hint(const std::string& given) {
  static const std::map<std::string, std::string> aliases = {
      {"fp32", "f32"}, {"float32", "f32"}, {"fp16", "f16"}, {"float16", "f16"}, {"bfloat16", "bf16"}};
  std::string name = lower(given.empty() ? "auto" : given);
  if (aliases.count(name)) name = aliases.at(name);
  if (name != "auto" && name != "f32" && name != "bf16" && name != "f16")
    throw Error("--precision-hint: unknown precision '" + given + "' (choose auto, f32, bf16 or f16)");
  return name;
}

/// The hint to compile with for the device's OPTIMIZATION_CAPABILITIES (Python: choose_precision_hint):
/// auto = bf16 where BF16 is reported, else f32; a hint the device cannot honour falls back to f32
/// with one notice line on stderr.
std::string chosen_hint(const std::string& requested, const std::vector<std::string>& capabilities,
                        const std::string& device) {
  const std::set<std::string> caps(capabilities.begin(), capabilities.end());
  if (requested == "auto") return caps.count("BF16") ? "bf16" : "f32";
  const std::string cap = requested == "bf16" ? "BF16" : requested == "f16" ? "FP16" : "FP32";
  if (requested == "f32" || caps.count(cap)) return requested;
  std::string have;
  for (const auto& c : caps) have += (have.empty() ? "" : ", ") + c;
  std::cerr << "align3d: openvino: device " << device << " cannot compute in " << requested
            << " (capabilities: " << (have.empty() ? "none reported" : have) << "); using f32\n";
  return "f32";
}

/// The device's OPTIMIZATION_CAPABILITIES; only FP32 (the safe choice) for a device without the property.
// The process's one ov::Core, never destroyed (as Python's loaders.openvino_core). OpenVINO's CPU plugin
// installs its own signal stack on the thread that loads it and unmaps it when released, restoring the
// previous one only if its own is still installed: two Cores released in the order they were made leave
// that thread on an unmapped signal stack, and the next signal it handles kills the process (SIGSEGV).
ov::Core& process_core() {
  static ov::Core* const core = new ov::Core();  // intentionally leaked: released only by process exit
  return *core;
}

std::vector<std::string> capabilities(ov::Core& core, const std::string& device) {
  try {
    return core.get_property(device, ov::device::capabilities);
  } catch (const std::exception&) {
    return {"FP32"};
  }
}

/// $ALIGN3D_CACHE/openvino/<device>-<hint>-<performance>-sdefault-t<threads> (default root ~/.cache/align3d_rt),
/// the folder Python's backend uses for the same setting; empty when it cannot be created (no cache).
std::string cache_folder(const std::string& device, const std::string& hint, const std::string& performance,
                         int threads) {
  namespace fs = std::filesystem;
  const char* env = std::getenv("ALIGN3D_CACHE");
  const char* home = std::getenv("HOME");
  fs::path root;
  if (env && *env) root = env;
  else if (home && *home)
    root = fs::path(home) / ".cache" / "align3d_rt";
  else
    return "";
  std::string key = device + "-" + hint + "-" + performance + "-sdefault-t" + std::to_string(threads);
  for (char& c : key)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  const fs::path dir = root / "openvino" / key;
  std::error_code ec;
  fs::create_directories(dir, ec);
  return ec ? "" : dir.string();
}

class OpenVinoEncoder final : public Encoder {
 public:
  OpenVinoEncoder(const BundleInfo& b, const InspectorOptions& o) {
    const std::string requested = normalised_hint(o.precision_hint);
    performance_ = o.performance_hint;
    std::transform(performance_.begin(), performance_.end(), performance_.begin(), ::toupper);
    if (performance_ != "LATENCY" && performance_ != "THROUGHPUT")
      throw Error("--performance-hint: unknown hint '" + o.performance_hint + "' (choose LATENCY or THROUGHPUT)");
    model_ = b.ir_xml.empty() ? b.onnx_file : b.ir_xml;
    precision_ = b.ir_xml.empty() ? b.precision : b.ir_precision;
    device_ = o.device;
    std::transform(device_.begin(), device_.end(), device_.begin(), ::toupper);
    try {
      ov::Core& core = process_core();
      const auto devices = core.get_available_devices();
      const std::string base = device_.substr(0, device_.find_first_of(".:"));
      const bool virtual_dev = base == "AUTO" || base == "MULTI" || base == "HETERO";
      const bool found = std::any_of(devices.begin(), devices.end(), [&](const std::string& d) {
        return d == device_ || d.substr(0, d.find('.')) == base;
      });
      if (!virtual_dev && !found) {
        std::string have;
        for (const auto& d : devices) have += (have.empty() ? "" : ", ") + d;
        throw Error("openvino: device " + device_ +
                    " is not available here (OpenVINO reports: " + (have.empty() ? "none" : have) + ")");
      }
      hint_ = chosen_hint(requested, capabilities(core, virtual_dev ? "CPU" : device_), device_);
      const auto mode =
          performance_ == "LATENCY" ? ov::hint::PerformanceMode::LATENCY : ov::hint::PerformanceMode::THROUGHPUT;
      ov::AnyMap config{{ov::hint::performance_mode.name(), mode},
                        {ov::hint::inference_precision.name(), hint_ == "f32"    ? ov::element::f32
                                                               : hint_ == "bf16" ? ov::element::bf16
                                                                                 : ov::element::f16}};
      if (o.threads > 0) config.emplace(ov::inference_num_threads.name(), o.threads);
      // One cache folder per setting, as Python: a blob compiled with another precision hint must not be
      // picked up (OpenVINO 2026.4 keys CPU blobs without the hint). Never inside the bundle's folder.
      const std::string cache = cache_folder(device_, hint_, performance_, o.threads);
      if (!cache.empty()) config.emplace(ov::cache_dir.name(), cache);
      compiled_ = core.compile_model(model_, device_, config);
      views_ = port(compiled_.inputs(), kViewsTensor, "input");
      maps_ = port(compiled_.outputs(), kPatchMapsTensor, "output");
      probs_ = port(compiled_.outputs(), kGlobalProbsTensor, "output");
      // One request (LATENCY) or one per stream (THROUGHPUT), created once and reused by every infer().
      const unsigned n = performance_ == "LATENCY" ? 1u : compiled_.get_property(ov::optimal_number_of_infer_requests);
      for (unsigned i = 0; i < std::max(1u, n); ++i) requests_.push_back(compiled_.create_infer_request());
    } catch (const Error&) {
      throw;
    } catch (const std::exception& err) {
      throw Error(model_ + ": OpenVINO cannot compile the model for " + device_ + " (" + first_line(err.what()) + ")");
    }
  }

  EncoderOutput infer(const std::uint8_t* views, int v, int s, int g) override {
    EncoderOutput out;
    if (v == 0) return out;
    // THROUGHPUT: the views split into near-equal parts (the first v % k one view longer, as Python's
    // np.array_split), one per request, run at once; results in view order.
    const int k = std::min<int>(static_cast<int>(requests_.size()), v);
    const size_t view_bytes = static_cast<size_t>(s) * s * 3;
    std::vector<int> first(k + 1, 0);
    for (int i = 0; i < k; ++i) first[i + 1] = first[i] + v / k + (i < v % k ? 1 : 0);
    for (int i = 0; i < k; ++i) {
      const size_t n = static_cast<size_t>(first[i + 1] - first[i]);
      ov::Tensor input(ov::element::u8, ov::Shape{n, static_cast<size_t>(s), static_cast<size_t>(s), 3},
                       const_cast<std::uint8_t*>(views + first[i] * view_bytes));  // read only
      requests_[i].set_tensor(views_, input);
      requests_[i].start_async();
    }
    for (int i = 0; i < k; ++i) requests_[i].wait();
    for (int i = 0; i < k; ++i) {
      const int n = first[i + 1] - first[i];
      const ov::Tensor maps = requests_[i].get_tensor(maps_);
      const ov::Tensor probs = requests_[i].get_tensor(probs_);
      const size_t want_maps = static_cast<size_t>(n) * 2 * g * g, want_probs = static_cast<size_t>(n) * 2;
      if (maps.get_element_type() != ov::element::f32 || maps.get_size() != want_maps ||
          probs.get_element_type() != ov::element::f32 || probs.get_size() != want_probs)
        throw Error(model_ + ": encoder outputs have unexpected shapes (want patch_maps (" + std::to_string(n) + ",2," +
                    std::to_string(g) + "," + std::to_string(g) + ") f32 and global_probs (" + std::to_string(n) +
                    ",2))");
      out.patch_maps.insert(out.patch_maps.end(), maps.data<const float>(), maps.data<const float>() + want_maps);
      out.global_probs.insert(out.global_probs.end(), probs.data<const float>(),
                              probs.data<const float>() + want_probs);
    }
    return out;
  }

  // The model's port named `name` (spec §3); "MODEL: the encoder graph has no input 'views' ..." otherwise.
  ov::Output<const ov::Node> port(const std::vector<ov::Output<const ov::Node>>& ports, const char* name,
                                  const char* kind) const {
    std::string have;
    for (const auto& p : ports) {
      if (p.get_names().count(name)) return p;
      have += (have.empty() ? "" : ", ") + (p.get_names().empty() ? std::string("(unnamed)") : p.get_any_name());
    }
    throw Error(model_ + ": the encoder graph has no " + kind + " '" + name + "' (it has: " + have +
                "); re-export the bundle with align3d-rt export");
  }

  std::string describe() const override { return "openvino " + device_ + " " + hint_ + " " + performance_; }
  std::string model_file() const override { return model_; }
  std::string precision() const override { return precision_; }
  std::string compute_precision() const override { return hint_; }

 private:
  std::string model_, precision_, device_, hint_, performance_;
  ov::CompiledModel compiled_;
  std::vector<ov::InferRequest> requests_;
  ov::Output<const ov::Node> views_, maps_, probs_;
};

}  // namespace

std::unique_ptr<Encoder> make_openvino_encoder(const BundleInfo& bundle, const InspectorOptions& options) {
  return std::make_unique<OpenVinoEncoder>(bundle, options);
}

}  // namespace align3d
