// Two Inspectors made and released in the order they were made, then a signal handled on this thread.
// OpenVINO's CPU plugin installs a signal stack of its own on the thread that loads it and unmaps it when
// released; with one ov::Core per Inspector this left the main thread on an unmapped signal stack and the
// handler's SIGTERM killed the process with SIGSEGV. With the process's one Core it is handled.
// Usage: test_two_inspectors BUNDLE_DIR (run by tests/test_cpp_inspector.py); prints "handled", exit 0.
#include <align3d/inspector.hpp>

#include <csignal>
#include <iostream>
#include <memory>

namespace {
volatile std::sig_atomic_t handled = 0;
void on_term(int) { handled = 1; }
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: test_two_inspectors BUNDLE_DIR\n";
    return 2;
  }
  struct sigaction action {};
  action.sa_handler = on_term;
  action.sa_flags = SA_ONSTACK;  // as Python's handlers and most programs' that keep a signal stack
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  try {
    auto first = std::make_unique<align3d::Inspector>(argv[1]);
    auto second = std::make_unique<align3d::Inspector>(argv[1]);
    first.reset();
    second.reset();
  } catch (const std::exception& err) {
    std::cerr << err.what() << "\n";
    return 2;
  }
  std::raise(SIGTERM);
  std::cout << (handled ? "handled" : "not handled") << std::endl;
  return handled ? 0 : 1;
}
