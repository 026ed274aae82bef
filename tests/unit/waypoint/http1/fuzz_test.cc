// Property checks: a corpus of valid exchanges gives the same events however it is split, and
// random garbage or mutated messages never crash a codec nor make it hold more than its limits.

#include <random>

#include <gtest/gtest.h>

#include "tests/unit/waypoint/http1/http1_test_util.h"

namespace nodemesh::waypoint::http1::test {
namespace {

const std::vector<std::string>& requestCorpus() {
  static const std::vector<std::string> kCorpus = {
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
      "\r\nGET /x?y=1 HTTP/1.1\r\nHost: a.b:80\r\nAccept: */*\r\nX-E:\r\n\r\n",
      "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\nhello world!",
      std::string("PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n") +
          "3;a=b\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n",
      "DELETE http://svc.ns:8080/r HTTP/1.1\r\nHost: svc\r\n\r\n",
      "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
      "HEAD /h HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
      "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
      "PATCH /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
  };
  return kCorpus;
}

const std::vector<std::string>& responseCorpus() {
  static const std::vector<std::string> kCorpus = {
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nT: v\r\n\r\n",
      "HTTP/1.1 204 No Content\r\nServer: s\r\n\r\n",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 500 \r\nContent-Length: 1\r\n\r\nx",
      "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
  };
  return kCorpus;
}

// The events a server saw, as text, for comparison.
std::string serverLog(const ServerRecorder& s) {
  std::string log;
  for (const RecordedRequest& r : s.requests) {
    log += r.head.method + " " + r.head.target + " [" + r.info.authority + "]";
    for (const HeaderField& f : r.head.headers.fields()) {
      log += " " + f.name + "=" + f.value;
    }
    log += " body=" + r.body;
    for (const HeaderField& f : r.trailers.fields()) {
      log += " trailer " + f.name + "=" + f.value;
    }
    log += r.complete ? " complete\n" : " incomplete\n";
  }
  return log;
}

// Feeds `input` in random pieces, answering each request when it completes.
std::string runServer(const std::string& input, std::mt19937& rng, bool random_split) {
  ServerRecorder s;
  s.on_complete = [&] { s.respond(200, s.requests.back().head.method == "HEAD" ? "" : "ok"); };
  size_t offset = 0;
  while (offset < input.size()) {
    const size_t n =
        random_split ? std::uniform_int_distribution<size_t>(1, 40)(rng) : input.size() - offset;
    const size_t take = std::min(n, input.size() - offset);
    EXPECT_TRUE(s.feed(input.substr(offset, take)).ok());
    offset += take;
  }
  EXPECT_TRUE(s.errors.empty());
  return serverLog(s);
}

TEST(Http1FuzzTest, RandomSplitsOfValidRequestsGiveTheSameEvents) {
  std::mt19937 rng(1234);  // NOLINT(cert-msc51-cpp): the same cases on every run
  const auto& corpus = requestCorpus();
  for (int round = 0; round < 300; ++round) {
    // A random sequence of keep-alive requests (the HTTP/1.0 one only last: it closes).
    std::string input;
    const int count = std::uniform_int_distribution<int>(1, 5)(rng);
    for (int i = 0; i < count; ++i) {
      const size_t pick = std::uniform_int_distribution<size_t>(0, corpus.size() - 1)(rng);
      if (corpus[pick].find("HTTP/1.0") != std::string::npos && i + 1 < count) {
        continue;
      }
      input += corpus[pick];
    }
    const std::string whole = runServer(input, rng, false);
    ASSERT_FALSE(whole.empty());
    ASSERT_EQ(runServer(input, rng, true), whole) << "round " << round;
  }
}

TEST(Http1FuzzTest, RandomSplitsOfValidResponsesGiveTheSameEvents) {
  std::mt19937 rng(99);  // NOLINT(cert-msc51-cpp): the same cases on every run
  for (const std::string& response : responseCorpus()) {
    std::string reference;
    for (int round = 0; round < 50; ++round) {
      ClientRecorder c;
      c.get();
      size_t offset = 0;
      while (offset < response.size()) {
        const size_t n =
            round == 0 ? response.size() : std::uniform_int_distribution<size_t>(1, 9)(rng);
        const size_t take = std::min(n, response.size() - offset);
        ASSERT_TRUE(c.feed(response.substr(offset, take)).ok()) << response;
        offset += take;
      }
      ASSERT_EQ(c.responses.size(), 1u) << response;
      const RecordedResponse& r = c.responses[0];
      ASSERT_TRUE(r.complete) << response;
      const std::string log = std::to_string(r.head.status) + r.body +
                              std::to_string(r.trailers.size()) + std::to_string(c.interims.size());
      if (round == 0) {
        reference = log;
      }
      EXPECT_EQ(log, reference) << response;
    }
  }
}

// Bytes that matter to the parser, weighted toward the dangerous ones.
char interestingByte(std::mt19937& rng) {
  static constexpr char kRaw[] = "\r\n\0 \t:;=\"\\,0123456789aAfFzZ\x7f\x80\xff";
  static const std::string kBytes(kRaw, sizeof(kRaw) - 1);  // the NUL inside included
  return kBytes[std::uniform_int_distribution<size_t>(0, kBytes.size() - 1)(rng)];
}

std::string mutate(std::string s, std::mt19937& rng) {
  const int edits = std::uniform_int_distribution<int>(1, 4)(rng);
  for (int i = 0; i < edits && !s.empty(); ++i) {
    const size_t at = std::uniform_int_distribution<size_t>(0, s.size() - 1)(rng);
    switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
      case 0:
        s[at] = interestingByte(rng);
        break;
      case 1:
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), interestingByte(rng));
        break;
      case 2:
        s.erase(at, 1);
        break;
      default:
        s.insert(at, s.substr(at, std::uniform_int_distribution<size_t>(0, 30)(rng)));
        break;
    }
  }
  return s;
}

constexpr size_t kBufferBound = 60 * 1024 + 4096;

TEST(Http1FuzzTest, GarbageAndMutationsNeverCrashOrGrowTheServer) {
  std::mt19937 rng(42);  // NOLINT(cert-msc51-cpp): the same cases on every run
  const auto& corpus = requestCorpus();
  for (int round = 0; round < 3000; ++round) {
    std::string input;
    if (round % 3 == 0) {
      const size_t n = std::uniform_int_distribution<size_t>(0, 300)(rng);
      for (size_t i = 0; i < n; ++i) {
        input.push_back(round % 2 == 0 ? static_cast<char>(rng()) : interestingByte(rng));
      }
    } else {
      input = corpus[std::uniform_int_distribution<size_t>(0, corpus.size() - 1)(rng)] +
              corpus[std::uniform_int_distribution<size_t>(0, corpus.size() - 1)(rng)];
      input = mutate(input, rng);
    }
    ServerRecorder s;
    s.on_complete = [&] {
      if (!s->isClosing()) {
        s.respond(200, "");
      }
    };
    size_t offset = 0;
    bool failed = false;
    while (offset < input.size() && !failed) {
      const size_t take =
          std::min(std::uniform_int_distribution<size_t>(1, 64)(rng), input.size() - offset);
      failed = !s.feed(input.substr(offset, take)).ok();
      offset += take;
      ASSERT_LE(s->bufferedBytes(), kBufferBound);
    }
    if (failed && !s.errors.empty()) {
      // Every refusal is answered (no response had started) and closes.
      EXPECT_EQ(s.errors.size(), 1u);
      const std::string out = s.output();
      EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
      EXPECT_TRUE(s->shouldClose());
    } else if (failed) {
      EXPECT_TRUE(s->isClosing());  // input after the last response (close, HTTP/1.0)
    }
    (void)s->receiveEof();
  }
}

TEST(Http1FuzzTest, GarbageAndMutationsNeverCrashOrGrowTheClient) {
  std::mt19937 rng(7);  // NOLINT(cert-msc51-cpp): the same cases on every run
  const auto& corpus = responseCorpus();
  for (int round = 0; round < 3000; ++round) {
    std::string input =
        mutate(corpus[std::uniform_int_distribution<size_t>(0, corpus.size() - 1)(rng)], rng);
    if (round % 4 == 0) {
      input.clear();
      for (int i = 0; i < 200; ++i) {
        input.push_back(static_cast<char>(rng()));
      }
    }
    ClientRecorder c;
    c.get(round % 5 == 0 ? "HEAD" : "GET");
    size_t offset = 0;
    bool failed = false;
    while (offset < input.size() && !failed) {
      const size_t take =
          std::min(std::uniform_int_distribution<size_t>(1, 64)(rng), input.size() - offset);
      failed = !c.feed(input.substr(offset, take)).ok();
      offset += take;
      ASSERT_LE(c->bufferedBytes(), kBufferBound);
    }
    (void)c->receiveEof();
    EXPECT_LE(c.errors.size(), 1u);
  }
}

TEST(Http1FuzzTest, EndlessChunkedBodyStaysBounded) {
  // Gigabytes of chunks go through without the codec keeping any of them.
  ServerRecorder s;
  ASSERT_TRUE(s.feed("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").ok());
  const std::string chunk = "1000\r\n" + std::string(4096, 'b') + "\r\n";
  size_t total = 0;
  size_t delivered_before = 0;
  for (int i = 0; i < 2000; ++i) {
    auto n = s->receive(asBytes(chunk));
    ASSERT_TRUE(n.ok());
    ASSERT_EQ(*n, chunk.size());
    ASSERT_LE(s->bufferedBytes(), 16u);
    total += 4096;
    // Hand the body to nobody: the recorder keeps it, so drop it to show the codec does not.
    delivered_before += s.requests[0].body.size();
    s.requests[0].body.clear();
  }
  EXPECT_EQ(delivered_before, total);
}

}  // namespace
}  // namespace nodemesh::waypoint::http1::test
