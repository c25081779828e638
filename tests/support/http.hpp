// A plain HTTP/1.1 exchange over loopback for tests (mesobd's metrics port, Prometheus's
// API): sends the request as given, reads until the server closes the connection.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace mesob::test {

// A TCP connection to a loopback port (127.0.0.1), from `from` (host order: another
// loopback address, 127.0.0.2 say, for a peer the server must tell apart; 0: any); -1
// if it cannot be made.
inline int connect_loopback(uint16_t port, uint32_t from = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_addr.s_addr = htonl(from);
  if (fd < 0 || (from != 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

// Sends `request` on a connected socket, reads until the server closes it, and closes it.
inline std::string exchange(int fd, const std::string& request) {
  const timeval tv{10, 0};  // a stuck server fails the test, not ctest's timeout
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (size_t at = 0; at < request.size();) {
    const ssize_t n = ::send(fd, request.data() + at, request.size() - at, MSG_NOSIGNAL);
    if (n <= 0) break;
    at += size_t(n);
  }
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, size_t(n));
  ::close(fd);
  return out;
}

inline std::string http(uint16_t port, const std::string& request) {
  const int fd = connect_loopback(port);
  if (fd < 0) return "connect failed";
  return exchange(fd, request);
}

inline std::string http_get(uint16_t port, const std::string& target) {
  return http(port, "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
}

// The value of the sample `series` (its name and labels exactly) in a Prometheus text
// exposition; -1: absent.
inline double exposition_sample(const std::string& text, const std::string& series) {
  const auto at = text.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
}

}  // namespace mesob::test
