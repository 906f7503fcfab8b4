-- The query GET /api/users/{username} runs (src/api/users.rs, select_user! + where
-- u.username = $1), for a random synthetic user, as pgbench -M prepared sends it: the
-- database-side ceiling for that endpoint. Keep it in step with the code.
\set n random(1, :users)
select u.id, u.username, u.created_at, p.user_id is not null as has_profile,
       p.email, p.name, p.location, p.bio, p.personality_type,
       p.created_at as profile_created_at, p.updated_at as profile_updated_at
  from users u
  left join user_profiles p on p.user_id = u.id
 where u.username = 'user_' || :n;
