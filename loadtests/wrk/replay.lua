-- wrk script of `make bench` (loadtests/bench.py): replays the requests of a file the
-- orchestrator wrote, one request per line, tab-separated:
--
--     METHOD <TAB> PATH <TAB> BEARER TOKEN or - <TAB> JSON BODY or -
--
--     wrk -t2 -c32 -d10s --latency -s loadtests/wrk/replay.lua URL -- FILE MODE
--
-- MODE "cycle": each thread goes round its share of the lines until the time is up
-- (tokens, attempts, boards used again and again: resume, autosave, result, ...).
-- MODE "once":  each line is sent exactly once (a new attempt, a submit: each can
-- happen only once); a thread that has had the answers to all its lines stops, and the
-- throughput is counted up to the last answer, not to the end of -d.
--
-- Thread t of n takes lines t, t+n, t+2n, ... so no two threads share a line. done()
-- prints one JSON line: requests, seconds (first request to last answer), per-status
-- counts, socket errors and the latency percentiles wrk measured (microseconds).

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local timespec = ffi.new("bench_timespec")

local function now_s()
   ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
   return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) / 1e9
end

local threads = {}
local thread_count = 0

function setup(thread)
   thread:set("thread_index", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

-- Per-thread state (each thread runs its own copy of this script).
local requests = {}
local next_request = 1
local mode = "cycle"
statuses = {}
answered = 0
first_sent = nil
last_answer = nil

local function split(line)
   local fields = {}
   for field in (line .. "\t"):gmatch("([^\t]*)\t") do
      table.insert(fields, field)
   end
   return fields
end

function init(args)
   local path = args[1]
   mode = args[2] or "cycle"
   local share = thread_index or 0
   local total = tonumber(args[3]) or 1
   local accept = { ["Accept-Encoding"] = "gzip", ["Accept"] = "application/json" }
   local n = 0
   for line in io.lines(path) do
      if line ~= "" then
         if n % total == share then
            local f = split(line)
            local headers = {}
            for k, v in pairs(accept) do headers[k] = v end
            if f[3] and f[3] ~= "-" then headers["Authorization"] = "Bearer " .. f[3] end
            local body = nil
            if f[4] and f[4] ~= "-" then
               body = f[4]
               headers["Content-Type"] = "application/json"
            end
            table.insert(requests, wrk.format(f[1], f[2], headers, body))
         end
         n = n + 1
      end
   end
end

-- wrk calls request() once in thread 0's state before the run, to check that it
-- returns a parsable request: answer that call without using up a line.
local verified = false

function request()
   if not verified then
      verified = true
      if thread_index == 0 then
         return requests[1] or wrk.format("GET", "/healthz")
      end
   end
   if next_request > #requests then
      if mode == "once" then
         return "" -- nothing left for this connection: it stays quiet
      end
      next_request = 1
   end
   if first_sent == nil then first_sent = now_s() end
   local r = requests[next_request]
   next_request = next_request + 1
   return r
end

function response(status, headers, body)
   answered = answered + 1
   last_answer = now_s()
   statuses[status] = (statuses[status] or 0) + 1
   if mode == "once" and answered >= #requests then
      wrk.thread:stop()
   end
end

function done(summary, latency, requests_)
   local total, started, ended = 0, nil, nil
   local merged = {}
   for _, thread in ipairs(threads) do
      total = total + (thread:get("answered") or 0)
      local s, e = thread:get("first_sent"), thread:get("last_answer")
      if s and (started == nil or s < started) then started = s end
      if e and (ended == nil or e > ended) then ended = e end
      for status, count in pairs(thread:get("statuses") or {}) do
         merged[tostring(status)] = (merged[tostring(status)] or 0) + count
      end
   end
   local parts = {}
   for status, count in pairs(merged) do
      table.insert(parts, string.format('"%s": %d', status, count))
   end
   local e = summary.errors
   io.write(string.format(
      '\nBENCH_JSON {"requests": %d, "seconds": %.4f, "wrk_requests": %d, "wrk_duration_us": %d,'
      .. ' "statuses": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d},'
      .. ' "latency_us": {"p50": %d, "p90": %d, "p95": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
      total, (ended or 0) - (started or 0), summary.requests, summary.duration, table.concat(parts, ", "),
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
      latency.max, latency.mean))
end
