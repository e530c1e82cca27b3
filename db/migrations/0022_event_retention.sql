CREATE TABLE "domain_event_retention" (
	"id" smallint PRIMARY KEY NOT NULL,
	"tx_id" bigint NOT NULL,
	"event_id" uuid NOT NULL,
	"removed_at" timestamp with time zone NOT NULL
);
