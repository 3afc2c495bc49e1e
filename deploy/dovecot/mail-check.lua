-- Dovecot's Lua passdb for plain IMAP/SMTP logins: asks the login service (POST /api/mail/check) whether the
-- password is one of the account's app passwords. The service throttles, audits and revokes; this only asks.
-- Settings come from the environment (dovecot.conf's import_environment):
--   LOGINSVC_MAIL_CHECK_URL          e.g. http://127.0.0.1:8000/api/mail/check (through the router)
--   LOGINSVC_MAIL_CHECK_CLIENT       the mail server's client id (LOGINSVC_MAIL_SERVER_CLIENT)
--   LOGINSVC_MAIL_CHECK_SECRET_FILE  a file holding that client's secret

local client, url

local function encode(value)
  return (tostring(value or ""):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function script_init()
  url = os.getenv("LOGINSVC_MAIL_CHECK_URL")
  local file = io.open(os.getenv("LOGINSVC_MAIL_CHECK_SECRET_FILE") or "", "r")
  if url == nil or file == nil then
    return 1
  end
  local secret = file:read("*l")
  file:close()
  -- Dovecot's HTTP client sends a URL's user and password as HTTP Basic credentials.
  url = url:gsub("^(https?://)", "%1" .. encode(os.getenv("LOGINSVC_MAIL_CHECK_CLIENT")) .. ":" .. encode(secret) .. "@")
  client = dovecot.http.client({ request_timeout_msecs = 5000, max_attempts = 2, user_agent = "dovecot-mail-check" })
  return 0
end

function auth_passdb_lookup(req)
  return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "passwords are checked, not looked up"
end

function auth_password_verify(req, pass)
  local request = client:request({ url = url, method = "POST" })
  request:add_header("Content-Type", "application/x-www-form-urlencoded")
  request:set_payload("username=" .. encode(req.user) .. "&password=" .. encode(pass) ..
                      "&service=" .. encode(req.service) .. "&remote_ip=" .. encode(req.remote_ip))
  local response = request:submit()
  local status = response:status()
  if status == 200 then
    local user = string.match(response:payload(), '"user": *"([^"]+)"')
    return dovecot.auth.PASSDB_RESULT_OK, { user = user }
  elseif status == 401 or status == 429 then
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, "refused by the login service (" .. status .. ")"
  end
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "the login service answered " .. status
end
