-- One database per service, one per ledger shard (the same list as `flotilla up --db postgres`
-- with two shards; tests/deploy/test_compose.py checks it). Run once, by the postgres image,
-- on an empty data volume.
CREATE DATABASE auth;
CREATE DATABASE accounts_s0;
CREATE DATABASE accounts_s1;
CREATE DATABASE payments;
CREATE DATABASE inventory;
CREATE DATABASE orders;
CREATE DATABASE billing;
CREATE DATABASE web;
