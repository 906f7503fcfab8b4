-- V4: profile data moves to its own table (seed Week 3 Day 5): users keeps authentication
-- only, user_profiles holds everything about the person, one profile per user.

create table user_profiles (
    id               serial primary key,
    -- unique: at most one profile per user (1:1); cascade: deleting a user deletes the profile.
    user_id          integer      not null unique references users (id) on delete cascade,
    email            varchar(255) not null unique,
    name             varchar(100),
    location         varchar(100),
    bio              text,
    personality_type varchar(50),
    created_at       timestamp default current_timestamp,
    updated_at       timestamp default current_timestamp
);

-- Every existing user gets a profile carrying the email it had on users (V5 drops it there).
insert into user_profiles (user_id, email)
select id, email
  from users;

-- The baboon personality test data for the sample users.
update user_profiles
   set name = 'Alice',
       location = 'Seattle, WA',
       bio = 'Careful planner who reads the whole manual first.',
       personality_type = 'Analytical'
 where user_id = (select id from users where username = 'alice');

update user_profiles
   set name = 'Bob',
       location = 'Austin, TX',
       bio = 'Tells the story of every throw, loudly.',
       personality_type = 'Expressive'
 where user_id = (select id from users where username = 'bob');

update user_profiles
   set name = 'Alpha Baboon',
       location = 'Troop headquarters',
       bio = 'Leads the troop and decides where it goes next.',
       personality_type = 'Driver'
 where user_id = (select id from users where username = 'alpha_baboon');
