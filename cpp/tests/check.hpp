// Minimal test helpers for the inspector's ctest programs (no test framework needed).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "align3d/inspector.hpp"

inline int g_failures = 0;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                                  \
    }                                                                                \
  } while (0)

/// Runs fn, expects an align3d::Error whose message equals `expected` (exact) or, when
/// `contains` is true, includes it. Reports what was thrown otherwise.
inline void expect_error(const std::function<void()>& fn, const std::string& expected, bool contains, const char* file,
                         int line) {
  try {
    fn();
    std::fprintf(stderr, "%s:%d: expected error '%s', nothing thrown\n", file, line, expected.c_str());
    ++g_failures;
  } catch (const align3d::Error& err) {
    const std::string msg = err.what();
    const bool ok = contains ? msg.find(expected) != std::string::npos : msg == expected;
    if (!ok || msg.find('\n') != std::string::npos) {
      std::fprintf(stderr, "%s:%d: expected error '%s', got '%s'\n", file, line, expected.c_str(), msg.c_str());
      ++g_failures;
    }
  } catch (const std::exception& err) {
    std::fprintf(stderr, "%s:%d: expected align3d::Error '%s', got other exception '%s'\n", file, line,
                 expected.c_str(), err.what());
    ++g_failures;
  }
}
#define EXPECT_ERROR(stmt, msg) expect_error([&] { stmt; }, msg, false, __FILE__, __LINE__)
#define EXPECT_ERROR_HAS(stmt, msg) expect_error([&] { stmt; }, msg, true, __FILE__, __LINE__)

inline int finish(const char* name) {
  if (g_failures) {
    std::fprintf(stderr, "%s: %d check(s) failed\n", name, g_failures);
    return 1;
  }
  std::printf("%s: all checks passed\n", name);
  return 0;
}
