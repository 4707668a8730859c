-- The schema poller created before migrations (SQLModel create_all, schema_version 1),
-- with a few rows of each kind. Statements end with ';' at the end of a line.

CREATE TABLE events (
	seq SERIAL NOT NULL,
	id VARCHAR(64) NOT NULL,
	type VARCHAR(64) NOT NULL,
	workspace VARCHAR(64) NOT NULL,
	resource_id VARCHAR(255) NOT NULL,
	timestamp TIMESTAMP WITH TIME ZONE NOT NULL,
	data JSONB NOT NULL,
	PRIMARY KEY (seq),
	UNIQUE (id)
);

CREATE INDEX ix_events_timestamp ON events (timestamp);

CREATE INDEX ix_events_type ON events (type);

CREATE TABLE meta (
	key VARCHAR(64) NOT NULL,
	value VARCHAR(256) NOT NULL,
	PRIMARY KEY (key)
);

CREATE TABLE resources (
	workspace VARCHAR(64) NOT NULL,
	source VARCHAR(32) NOT NULL,
	resource_id VARCHAR(255) NOT NULL,
	status VARCHAR(64),
	created BIGINT,
	active BOOLEAN NOT NULL,
	data JSONB NOT NULL,
	first_seen_at TIMESTAMP WITH TIME ZONE NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (workspace, source, resource_id)
);

CREATE INDEX ix_resources_active ON resources (workspace, source, active);

CREATE TABLE sink_state (
	name VARCHAR(64) NOT NULL,
	enabled BOOLEAN NOT NULL,
	disabled_reason VARCHAR(1000),
	failing_since TIMESTAMP WITH TIME ZONE,
	next_probe_at TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (name)
);

CREATE TABLE source_state (
	workspace VARCHAR(64) NOT NULL,
	source VARCHAR(32) NOT NULL,
	baselined BOOLEAN NOT NULL,
	cursor BIGINT,
	last_poll_at TIMESTAMP WITH TIME ZONE,
	last_success_at TIMESTAMP WITH TIME ZONE,
	last_reconcile_at TIMESTAMP WITH TIME ZONE,
	last_error VARCHAR(1000),
	error_streak INTEGER NOT NULL,
	held_since TIMESTAMP WITH TIME ZONE,
	held_count INTEGER NOT NULL,
	PRIMARY KEY (workspace, source)
);

CREATE TABLE deliveries (
	id SERIAL NOT NULL,
	event_seq BIGINT NOT NULL,
	sink VARCHAR(64) NOT NULL,
	order_key VARCHAR(400) NOT NULL,
	status VARCHAR(16) NOT NULL,
	attempts INTEGER NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL,
	last_attempt_at TIMESTAMP WITH TIME ZONE,
	last_status_code INTEGER,
	last_error VARCHAR(1000),
	last_duration_ms FLOAT,
	last_outcome VARCHAR(16),
	delivered_at TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (id),
	CONSTRAINT uq_deliveries_event_sink UNIQUE (event_seq, sink),
	FOREIGN KEY(event_seq) REFERENCES events (seq)
);

CREATE INDEX ix_deliveries_due ON deliveries (sink, status, next_attempt_at, event_seq);

CREATE INDEX ix_deliveries_order ON deliveries (sink, order_key, status, event_seq);

CREATE TABLE attempts (
	id SERIAL NOT NULL,
	delivery_id INTEGER NOT NULL,
	attempted_at TIMESTAMP WITH TIME ZONE NOT NULL,
	ok BOOLEAN NOT NULL,
	status_code INTEGER,
	error VARCHAR(1000),
	duration_ms FLOAT,
	PRIMARY KEY (id),
	FOREIGN KEY(delivery_id) REFERENCES deliveries (id)
);

CREATE INDEX ix_attempts_delivery_id ON attempts (delivery_id);
INSERT INTO meta ("key", value) VALUES ('schema_version', '1');

INSERT INTO meta ("key", value) VALUES ('heartbeat', '2026-11-27T10:00:05+00:00');

INSERT INTO resources (workspace, source, resource_id, status, created, active, data, first_seen_at, updated_at)
VALUES ('default', 'batch_jobs', 'job-1', 'SUCCESS', 1764237600, false, '{"id": "job-1", "status": "SUCCESS"}', '2026-11-27 10:00:00+00', '2026-11-27 10:00:05+00');

INSERT INTO source_state (workspace, source, baselined, cursor, last_poll_at, last_success_at, last_reconcile_at, last_error, error_streak, held_since, held_count)
VALUES ('default', 'batch_jobs', true, 1764237600, '2026-11-27 10:00:05+00', '2026-11-27 10:00:05+00', NULL, NULL, 0, NULL, 0);

INSERT INTO events (seq, id, type, workspace, resource_id, timestamp, data)
VALUES (1, 'evt_legacy_created', 'batch_job.created', 'default', 'job-1', '2026-11-27 10:00:00+00', '{"id": "job-1", "status": "QUEUED"}');

INSERT INTO events (seq, id, type, workspace, resource_id, timestamp, data)
VALUES (2, 'evt_legacy_succeeded', 'batch_job.succeeded', 'default', 'job-1', '2026-11-27 10:00:05+00', '{"id": "job-1", "status": "SUCCESS"}');

INSERT INTO deliveries (id, event_seq, sink, order_key, status, attempts, created_at, next_attempt_at, last_attempt_at, last_status_code, last_error, last_duration_ms, last_outcome, delivered_at)
VALUES (1, 1, 'hook', 'default/batch_jobs/job-1', 'delivered', 1, '2026-11-27 10:00:00+00', '2026-11-27 10:00:00+00', '2026-11-27 10:00:00+00', 200, NULL, 12.5, 'delivered', '2026-11-27 10:00:00+00');

INSERT INTO deliveries (id, event_seq, sink, order_key, status, attempts, created_at, next_attempt_at, last_attempt_at, last_status_code, last_error, last_duration_ms, last_outcome, delivered_at)
VALUES (2, 2, 'hook', 'default/batch_jobs/job-1', 'pending', 1, '2026-11-27 10:00:05+00', '2026-11-27 10:00:05+00', '2026-11-27 10:00:05+00', 503, 'HTTP 503', 8.0, 'transient', NULL);

INSERT INTO attempts (id, delivery_id, attempted_at, ok, status_code, error, duration_ms)
VALUES (1, 1, '2026-11-27 10:00:00+00', true, 200, NULL, 12.5);

INSERT INTO attempts (id, delivery_id, attempted_at, ok, status_code, error, duration_ms)
VALUES (2, 2, '2026-11-27 10:00:05+00', false, 503, 'HTTP 503', 8.0);

INSERT INTO sink_state (name, enabled, disabled_reason, failing_since, next_probe_at)
VALUES ('hook', true, NULL, '2026-11-27 10:00:05+00', '2026-11-27 10:00:05+00');

SELECT setval('events_seq_seq', 2);

SELECT setval('deliveries_id_seq', 2);

SELECT setval('attempts_id_seq', 2);
