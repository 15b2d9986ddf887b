// The one assertion helper of the C++ ctest programs (geometry and inspector; no test framework
// needed). CHECK(cond), CHECK_THROWS(expr, text) and EXPECT_ERROR / EXPECT_ERROR_HAS record
// failures; check::finish() prints a summary and returns the exit status.
//
// EXPECT_ERROR(stmt, msg) expects an exception of type CHECK_ERROR_TYPE (define it before including
// this header, e.g. align3d::Error; default std::exception) whose one-line what() equals msg;
// EXPECT_ERROR_HAS only needs what() to contain msg.
#pragma once

#include <cstdio>
#include <exception>
#include <functional>
#include <string>

#ifndef CHECK_ERROR_TYPE
#define CHECK_ERROR_TYPE std::exception
#endif

namespace check {

inline int& failures() {
  static int count = 0;
  return count;
}

inline void fail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
  ++failures();
}

inline int finish(const char* name) {
  if (failures()) {
    std::fprintf(stderr, "%s: %d check(s) failed\n", name, failures());
    return 1;
  }
  std::printf("%s: all checks passed\n", name);
  return 0;
}

/// Runs fn, expects an E whose message equals `expected` (or, when `contains`, includes it) and is
/// one line. Reports what was thrown otherwise.
template <class E>
void expect_error(const std::function<void()>& fn, const std::string& expected, bool contains, const char* file,
                  int line) {
  try {
    fn();
    fail(file, line, "expected error '" + expected + "', nothing thrown");
  } catch (const E& err) {
    const std::string msg = err.what();
    const bool ok = contains ? msg.find(expected) != std::string::npos : msg == expected;
    if (!ok || msg.find('\n') != std::string::npos)
      fail(file, line, "expected error '" + expected + "', got '" + msg + "'");
  } catch (const std::exception& err) {
    fail(file, line,
         "expected error '" + expected + "' of the library's type, got other exception '" + err.what() + "'");
  }
}

}  // namespace check

#define CHECK(cond)                                      \
  do {                                                   \
    if (!(cond)) check::fail(__FILE__, __LINE__, #cond); \
  } while (0)

// expr must throw an exception whose what() contains `text`.
#define CHECK_THROWS(expr, text)                                                                                 \
  do {                                                                                                           \
    bool thrown_ = false;                                                                                        \
    try {                                                                                                        \
      (void)(expr);                                                                                              \
    } catch (const std::exception& e_) {                                                                         \
      thrown_ = true;                                                                                            \
      if (std::string(e_.what()).find(text) == std::string::npos)                                                \
        check::fail(__FILE__, __LINE__,                                                                          \
                    std::string(#expr) + " threw '" + e_.what() + "', expected it to mention '" + (text) + "'"); \
    }                                                                                                            \
    if (!thrown_) check::fail(__FILE__, __LINE__, std::string(#expr) + " did not throw");                        \
  } while (0)

#define EXPECT_ERROR(stmt, msg) check::expect_error<CHECK_ERROR_TYPE>([&] { stmt; }, msg, false, __FILE__, __LINE__)
#define EXPECT_ERROR_HAS(stmt, msg) check::expect_error<CHECK_ERROR_TYPE>([&] { stmt; }, msg, true, __FILE__, __LINE__)
