-- wrk script: after the run, print wrk's whole latency histogram on one
-- line ("latency-histogram <us>:<count> ..."), so that the bench can pool
-- the samples of many short runs and take percentiles of the union instead
-- of a median of per-run percentiles, which one noisy second can swing.
done = function(summary, latency, requests)
  local parts = {}
  -- latency(i) gives the i-th populated bucket: its value in microseconds
  -- and how many requests took that long.
  for i = 1, #latency do
    local us, count = latency(i)
    parts[#parts + 1] = string.format("%d:%d", us, count)
  end
  io.write("latency-histogram " .. table.concat(parts, " ") .. "\n")
end
