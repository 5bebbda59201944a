-- Synapse's database on the same server as the bridge's (docker-compose.yml).
-- Synapse requires the C collation and ctype, hence template0.
CREATE DATABASE synapse
    WITH OWNER bridge TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
