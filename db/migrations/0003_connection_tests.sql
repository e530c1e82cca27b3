CREATE TABLE "connection_tests" (
	"id" uuid PRIMARY KEY NOT NULL,
	"resource_type" text NOT NULL,
	"resource_id" uuid NOT NULL,
	"tested_at" timestamp with time zone DEFAULT now() NOT NULL,
	"config_hash" text NOT NULL,
	"candidate" boolean NOT NULL,
	"ok" boolean NOT NULL,
	"result" jsonb NOT NULL,
	"actor_key_id" uuid
);
--> statement-breakpoint
CREATE INDEX "connection_tests_lookup_idx" ON "connection_tests" USING btree ("resource_type","resource_id","config_hash","id");--> statement-breakpoint
INSERT INTO "connection_tests" ("id", "resource_type", "resource_id", "tested_at", "config_hash", "candidate", "ok", "result", "actor_key_id")
  SELECT "id", 'integration', "integration_id", "tested_at", "config_hash", "candidate", "ok", "result", "actor_key_id" FROM "integration_tests";
--> statement-breakpoint
DROP TABLE "integration_tests" CASCADE;
