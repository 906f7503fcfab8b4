-- GET /api/users/{username} for a random synthetic user (user_1 .. user_$BENCH_USERS),
-- the same distribution bench/pgbench/user.sql draws from.
local users = tonumber(os.getenv("BENCH_USERS") or "1000")

request = function()
   return wrk.format("GET", "/api/users/user_" .. math.random(1, users))
end
