// sha256 through OpenSSL's EVP interface.
#include <openssl/evp.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "align3d/inspector.hpp"
#include "bundle.hpp"

namespace align3d {
namespace {

struct MdCtx {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~MdCtx() { EVP_MD_CTX_free(ctx); }
};

std::string to_hex(const unsigned char* digest, unsigned int len) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 15]);
  }
  return out;
}

}  // namespace

std::string sha256_hex(const std::string& bytes) {
  MdCtx md;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!md.ctx || EVP_DigestInit_ex(md.ctx, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(md.ctx, bytes.data(), bytes.size()) != 1 || EVP_DigestFinal_ex(md.ctx, digest, &len) != 1)
    throw Error("sha256: OpenSSL EVP digest failed");
  return to_hex(digest, len);
}

std::string sha256_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw Error(path + ": cannot open for hashing");
  MdCtx md;
  if (!md.ctx || EVP_DigestInit_ex(md.ctx, EVP_sha256(), nullptr) != 1)
    throw Error("sha256: OpenSSL EVP digest failed");
  std::vector<char> buf(1 << 20);
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0)
    if (EVP_DigestUpdate(md.ctx, buf.data(), n) != 1) throw Error("sha256: OpenSSL EVP digest failed");
  if (std::ferror(f.get())) throw Error(path + ": read error while hashing");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(md.ctx, digest, &len) != 1) throw Error("sha256: OpenSSL EVP digest failed");
  return to_hex(digest, len);
}

}  // namespace align3d
