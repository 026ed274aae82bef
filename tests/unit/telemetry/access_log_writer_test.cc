#include "telemetry/access_log_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace nodemesh::telemetry {
namespace {

using std::chrono::milliseconds;

// A pipe whose read end the test drains.
struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    read_fd = fds[0];
    write_fd = fds[1];
  }
  ~Pipe() {
    if (read_fd >= 0) ::close(read_fd);
    if (write_fd >= 0) ::close(write_fd);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  // What is in the pipe now (the read end is made non-blocking).
  std::string drain() const {
    ::fcntl(read_fd, F_SETFL, O_NONBLOCK);
    std::string out;
    char buf[65536];
    while (true) {
      const ssize_t n = ::read(read_fd, buf, sizeof(buf));
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

  int read_fd = -1;
  int write_fd = -1;
};

TEST(AccessLogWriterTest, LinesWaitForTheFlushIntervalThenArriveInOrder) {
  Pipe pipe;
  AccessLogWriterOptions options;
  options.flush_interval = milliseconds(300);
  AccessLogWriter writer(pipe.write_fd, options);
  writer.write("one");
  writer.write("two");
  EXPECT_EQ(pipe.drain(), "");  // held: no write per line
  std::string got;
  for (int i = 0; i < 100 && got.empty(); ++i) {
    std::this_thread::sleep_for(milliseconds(20));
    got = pipe.drain();
  }
  EXPECT_EQ(got, "one\ntwo\n");
}

TEST(AccessLogWriterTest, FlushBytesWriteWithoutWaitingForTheInterval) {
  Pipe pipe;
  AccessLogWriterOptions options;
  options.flush_interval = milliseconds(60000);
  options.flush_bytes = 100;
  AccessLogWriter writer(pipe.write_fd, options);
  const std::string line(60, 'x');
  writer.write(line);
  writer.write(line);  // 122 bytes waiting: past flush_bytes
  std::string got;
  for (int i = 0; i < 100 && got.size() < 122; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
    got += pipe.drain();
  }
  EXPECT_EQ(got, line + "\n" + line + "\n");
}

TEST(AccessLogWriterTest, ExplicitFlushAndDestructorWriteEverything) {
  Pipe pipe;
  AccessLogWriterOptions options;
  options.flush_interval = milliseconds(60000);
  {
    AccessLogWriter writer(pipe.write_fd, options);
    writer.write("a");
    writer.flush();
    EXPECT_EQ(pipe.drain(), "a\n");
    writer.write("b");
  }
  EXPECT_EQ(pipe.drain(), "b\n");
}

TEST(AccessLogWriterTest, ZeroIntervalWritesEachLineAtOnce) {
  Pipe pipe;
  AccessLogWriterOptions options;
  options.flush_interval = milliseconds(0);
  AccessLogWriter writer(pipe.write_fd, options);
  writer.write("now");
  EXPECT_EQ(pipe.drain(), "now\n");
}

TEST(AccessLogWriterTest, LinesFromManyThreadsAreNeverCutOrInterleaved) {
  Pipe pipe;
  AccessLogWriterOptions options;
  options.flush_interval = milliseconds(5);
  options.flush_bytes = 512;
  std::string got;
  std::thread reader([&] {
    char buf[4096];
    while (true) {
      const ssize_t n = ::read(pipe.read_fd, buf, sizeof(buf));
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
  });
  {
    AccessLogWriter writer(pipe.write_fd, options);
    std::vector<std::thread> writers;
    writers.reserve(4);
    for (int t = 0; t < 4; ++t) {
      writers.emplace_back([&writer, t] {
        for (int i = 0; i < 2000; ++i) writer.write(std::string(40, static_cast<char>('a' + t)));
      });
    }
    for (auto& w : writers) w.join();
  }
  ::close(pipe.write_fd);
  pipe.write_fd = -1;
  reader.join();
  size_t lines = 0;
  size_t start = 0;
  while (start < got.size()) {
    const size_t end = got.find('\n', start);
    ASSERT_NE(end, std::string::npos);
    const std::string line = got.substr(start, end - start);
    ASSERT_EQ(line.size(), 40u);
    EXPECT_EQ(line.find_first_not_of(line[0]), std::string::npos) << line;
    ++lines;
    start = end + 1;
  }
  EXPECT_EQ(lines, 8000u);
}

TEST(AccessLogWriterTest, PastTheCapLinesAreDroppedAndCounted) {
  Pipe pipe;
  // Lines past the cap (1,000 bytes waiting) are dropped, not held.
  AccessLogWriterOptions options;
  options.flush_interval = milliseconds(60000);
  options.flush_bytes = 1 << 30;
  options.cap_bytes = 1000;
  AccessLogWriter writer(pipe.write_fd, options);
  const std::string line(99, 'z');  // 100 bytes with its newline
  for (int i = 0; i < 15; ++i) writer.write(line);
  EXPECT_EQ(writer.droppedLines(), 5u);
  writer.flush();
  EXPECT_EQ(pipe.drain().size(), 1000u);
}

}  // namespace
}  // namespace nodemesh::telemetry
