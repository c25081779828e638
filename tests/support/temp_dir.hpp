// A fresh directory under /tmp for one test, removed when it goes out of scope
// (kept when MESOB_KEEP_DIR is set, for post-mortems).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace mesob::test {

class temp_dir {
 public:
  explicit temp_dir(const std::string& prefix = "mesob-test") {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
    EXPECT_FALSE(path_.empty()) << "mkdtemp failed for " << tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    if (!path_.empty() && std::getenv("MESOB_KEEP_DIR") == nullptr)
      std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace mesob::test
