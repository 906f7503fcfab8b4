-- V5: users becomes a pure authentication table (seed Week 3 Day 5). The email lives in
-- user_profiles since V4; updated_at described the profile, which has its own.

alter table users
    drop column email,
    drop column updated_at;
