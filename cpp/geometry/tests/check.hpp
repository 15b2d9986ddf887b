// A tiny assertion helper for the geometry ctest programs: CHECK(cond) and CHECK_THROWS(expr, text)
// record failures; finish() prints a summary and returns the exit status.
#pragma once

#include <cstdio>
#include <exception>
#include <string>

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

}  // namespace check

#define CHECK(cond)                                          \
    do {                                                     \
        if (!(cond)) check::fail(__FILE__, __LINE__, #cond); \
    } while (0)

// expr must throw an exception whose what() contains `text`.
#define CHECK_THROWS(expr, text)                                                                   \
    do {                                                                                           \
        bool thrown_ = false;                                                                      \
        try {                                                                                      \
            (void)(expr);                                                                          \
        } catch (const std::exception& e_) {                                                       \
            thrown_ = true;                                                                        \
            if (std::string(e_.what()).find(text) == std::string::npos)                            \
                check::fail(__FILE__, __LINE__, std::string(#expr) + " threw '" + e_.what() +      \
                                                    "', expected it to mention '" + (text) + "'"); \
        }                                                                                          \
        if (!thrown_) check::fail(__FILE__, __LINE__, std::string(#expr) + " did not throw");      \
    } while (0)
