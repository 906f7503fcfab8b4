-- POST /api/auth/login with the right password for the one user bench/run.py registered
-- (BENCH_LOGIN_USER / BENCH_LOGIN_PASSWORD): each request is one argon2id verification.
local body = string.format('{"username":"%s","password":"%s"}',
   os.getenv("BENCH_LOGIN_USER"), os.getenv("BENCH_LOGIN_PASSWORD"))

request = function()
   return wrk.format("POST", "/api/auth/login", {["Content-Type"] = "application/json"}, body)
end
