-- V3: authentication fields (seed Week 3 Day 5), added with the nullable -> populate ->
-- constrain pattern so that existing rows never violate a constraint mid-migration.

-- 1. Nullable first: adding a NOT NULL column without a default fails on a non-empty table.
alter table users
    add column password_hash        text,
    add column last_password_change timestamp default current_timestamp;

-- 2. Populate the existing rows.
--    '!locked' is deliberately not a PHC string (those start with '$'), so no password
--    verifier can ever accept it: the sample users have no password and cannot log in.
--    Registration writes a real Argon2 hash for new users.
update users
   set password_hash = '!locked',
       last_password_change = coalesce(last_password_change, current_timestamp)
 where password_hash is null;

-- 3. Constrain once every row has a value.
alter table users
    alter column password_hash set not null;
