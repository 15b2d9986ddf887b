// TensorRT + CUDA runtime backend (optional: -DALIGN3D_WITH_TENSORRT=ON, built only when CMake finds
// TensorRT's NvInfer.h / libnvinfer and the CUDA runtime). Runs an engine the bundle already holds
// (spec section 2.7): the inspector never builds engines; `align3d-rt export --tensorrt` does.
// Engine selection follows the spec's rule (this GPU's name and this TensorRT version, exact; the
// largest max_batch; the engine must come from this bundle's encoder.onnx); the engine file was
// hash-checked with every other bundle file by load_bundle. Views are run in chunks of at most
// min(max_batch, kViewChunk), a chunk below min_batch padded by repeating its last view (spec 2.7).
// Written against the TensorRT 10 API (enqueueV3, named tensors); not compiled on the development
// machine, which has no TensorRT and no GPU.
#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "encoder.hpp"

namespace align3d {
namespace {

class QuietLogger final : public nvinfer1::ILogger {
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kERROR) std::cerr << "align3d: tensorrt: " << msg << "\n";
  }
};

QuietLogger& logger() {
  static QuietLogger instance;
  return instance;
}

/// Python's tensorrt.__version__ for this build: major.minor.patch.build.
std::string tensorrt_version() {
  return std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
         std::to_string(NV_TENSORRT_PATCH) + "." + std::to_string(NV_TENSORRT_BUILD);
}

void check_cuda(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) throw Error(what + " (" + cudaGetErrorString(status) + ")");
}

std::string gpu_name(int device) {
  cudaDeviceProp props{};
  check_cuda(cudaGetDeviceProperties(&props, device), "cuda: device " + std::to_string(device) + " is not usable");
  return props.name;
}

std::string engine_list(const nlohmann::json& engines) {
  std::string out;
  for (auto it = engines.begin(); it != engines.end(); ++it) {
    const auto& e = it.value();
    out += (out.empty() ? "" : "; ") + it.key() + " (" + e.value("gpu_name", std::string("?")) + ", TensorRT " +
           e.value("tensorrt_version", std::string("?")) + ")";
  }
  return out;
}

/// Spec 2.7 selection rule (no batch size given, as the Python runtime does).
nlohmann::json select_engine(const BundleInfo& b, const std::string& gpu, const std::string& version) {
  const std::string mpath = b.path + "/manifest.json";
  const nlohmann::json engines = b.manifest.value("engines", nlohmann::json::object());
  if (!engines.is_object() || engines.empty())
    throw Error(mpath +
                ": no TensorRT engine in the bundle; build one with `align3d-rt export --tensorrt` "
                "or export.tensorrt_build.build_engine");
  const nlohmann::json* best = nullptr;
  std::string best_key;
  for (auto it = engines.begin(); it != engines.end(); ++it) {
    const auto& e = it.value();
    if (e.value("index_version", 1) > 1)
      throw Error(mpath + ": TensorRT engine " + it.key() + " comes from a newer align3d_rt; upgrade it");
    if (e.value("gpu_name", std::string()) != gpu || e.value("tensorrt_version", std::string()) != version) continue;
    const int max_batch = e.value("max_batch", 0);
    if (best == nullptr || max_batch > best->value("max_batch", 0) ||
        (max_batch == best->value("max_batch", 0) && it.key() > best_key)) {
      best = &e;
      best_key = it.key();
    }
  }
  if (best == nullptr)
    throw Error(mpath + ": no TensorRT engine for " + gpu + " with TensorRT " + version +
                " (have: " + engine_list(engines) + "); rebuild one on this machine");
  if (best->value("onnx_sha256", std::string()) != b.onnx_sha256)
    throw Error(mpath + ": engine " + best_key + " was built from another encoder.onnx; rebuild it");
  return *best;
}

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr != nullptr) cudaFree(ptr);
  }
  void reserve(size_t n) {
    if (n <= bytes) return;
    if (ptr != nullptr) cudaFree(ptr);
    ptr = nullptr;
    check_cuda(cudaMalloc(&ptr, n), "cuda: cannot allocate " + std::to_string(n) + " bytes");
    bytes = n;
  }
};

class TensorRtEncoder final : public Encoder {
 public:
  TensorRtEncoder(const BundleInfo& b, const InspectorOptions& o) : precision_(b.precision) {
    if (o.precision_hint != "auto" && o.precision_hint != "f32" && o.precision_hint != "fp32")
      throw Error("--precision-hint: only the openvino backend takes it (TensorRT runs the engine's precision)");
    const nlohmann::json entry = select_engine(b, gpu_name(0), tensorrt_version());
    model_ = b.path + "/" + entry.value("file", std::string());
    min_batch_ = std::max(1, entry.value("min_batch", 1));
    max_batch_ = std::max(min_batch_, std::min(entry.value("max_batch", 1), kViewChunk));
    std::ifstream in(model_, std::ios::binary);
    const std::string blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) throw Error(model_ + ": engine file missing or unreadable; rebuild it");
    runtime_.reset(nvinfer1::createInferRuntime(logger()));
    if (!runtime_) throw Error(model_ + ": TensorRT runtime could not be created");
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) throw Error(model_ + ": TensorRT cannot deserialize the engine (built by another version?)");
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error(model_ + ": TensorRT cannot create an execution context");
    check_cuda(cudaStreamCreate(&stream_), model_ + ": cuda stream");
  }

  ~TensorRtEncoder() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  EncoderOutput infer(const std::uint8_t* views, int v, int s, int g) override {
    EncoderOutput out;
    out.patch_maps.resize(static_cast<size_t>(v) * 2 * g * g);
    out.global_probs.resize(static_cast<size_t>(v) * 2);
    const size_t view_bytes = static_cast<size_t>(s) * s * 3, map_floats = static_cast<size_t>(2) * g * g;
    for (int start = 0; start < v; start += max_batch_) {
      const int n = std::min(max_batch_, v - start), rows = std::max(n, min_batch_);
      input_.reserve(rows * view_bytes);
      maps_.reserve(rows * map_floats * sizeof(float));
      probs_.reserve(static_cast<size_t>(rows) * 2 * sizeof(float));
      auto* dst = static_cast<std::uint8_t*>(input_.ptr);
      check_cuda(cudaMemcpyAsync(dst, views + start * view_bytes, n * view_bytes, cudaMemcpyHostToDevice, stream_),
                 model_ + ": copy views");
      for (int pad = n; pad < rows; ++pad)  // repeat the last view up to min_batch
        check_cuda(cudaMemcpyAsync(dst + pad * view_bytes, views + (start + n - 1) * view_bytes, view_bytes,
                                   cudaMemcpyHostToDevice, stream_),
                   model_ + ": copy views");
      if (!context_->setInputShape(kViewsTensor, nvinfer1::Dims4{rows, s, s, 3}) ||
          !context_->setTensorAddress(kViewsTensor, input_.ptr) ||
          !context_->setTensorAddress(kPatchMapsTensor, maps_.ptr) ||
          !context_->setTensorAddress(kGlobalProbsTensor, probs_.ptr))
        throw Error(model_ + ": the engine does not take views (" + std::to_string(rows) + "," + std::to_string(s) +
                    "," + std::to_string(s) + ",3) with outputs patch_maps and global_probs");
      if (!context_->enqueueV3(stream_)) throw Error(model_ + ": TensorRT inference failed");
      check_cuda(cudaMemcpyAsync(out.patch_maps.data() + start * map_floats, maps_.ptr, n * map_floats * sizeof(float),
                                 cudaMemcpyDeviceToHost, stream_),
                 model_ + ": copy maps");
      check_cuda(cudaMemcpyAsync(out.global_probs.data() + static_cast<size_t>(start) * 2, probs_.ptr,
                                 static_cast<size_t>(n) * 2 * sizeof(float), cudaMemcpyDeviceToHost, stream_),
                 model_ + ": copy probabilities");
      check_cuda(cudaStreamSynchronize(stream_), model_ + ": inference");
    }
    return out;
  }

  std::string describe() const override { return "tensorrt " + tensorrt_version() + " " + gpu_name(0); }
  std::string model_file() const override { return model_; }
  std::string precision() const override { return precision_; }

 private:
  struct Destroy {
    template <typename T>
    void operator()(T* p) const {
      delete p;
    }
  };
  std::unique_ptr<nvinfer1::IRuntime, Destroy> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine, Destroy> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext, Destroy> context_;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer input_, maps_, probs_;
  std::string model_, precision_;
  int min_batch_ = 1, max_batch_ = 1;
};

}  // namespace

std::unique_ptr<Encoder> make_tensorrt_encoder(const BundleInfo& bundle, const InspectorOptions& options) {
  return std::make_unique<TensorRtEncoder>(bundle, options);
}

}  // namespace align3d
