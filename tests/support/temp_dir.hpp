// A fresh directory under /tmp for one test, removed when it goes out of scope.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace mesob::test {

class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = "/tmp/mesob-test-XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace mesob::test
