-- V2: the users table and the sample users (seed Week 3 Day 4).
-- V1 was Flyway's baseline of the original database and is not a file.
--
-- The unique constraints on username and email are the indexes lookups use, so no separate
-- index duplicates them (each extra index would slow every insert for nothing).

create table users (
    id         serial primary key,
    username   varchar(50)  not null unique,
    email      varchar(255) not null unique,
    created_at timestamp default current_timestamp,
    updated_at timestamp default current_timestamp
);

-- Sample users for checking connectivity end to end. They get no password in V3: they can be
-- listed but nobody can log in as them.
insert into users (username, email) values
    ('alice', 'alice@example.com'),
    ('bob', 'bob@example.com'),
    ('alpha_baboon', 'alpha@example.com');
