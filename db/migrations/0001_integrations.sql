CREATE TABLE "integration_tests" (
	"id" uuid PRIMARY KEY NOT NULL,
	"integration_id" uuid NOT NULL,
	"tested_at" timestamp with time zone DEFAULT now() NOT NULL,
	"config_hash" text NOT NULL,
	"candidate" boolean NOT NULL,
	"ok" boolean NOT NULL,
	"result" jsonb NOT NULL,
	"actor_key_id" uuid
);
--> statement-breakpoint
CREATE TABLE "integrations" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"tenant" text NOT NULL,
	"client_id" text NOT NULL,
	"cloud" text NOT NULL,
	"auth_method" text NOT NULL,
	"client_secret_sealed" text,
	"certificate_pem" text,
	"private_key_sealed" text,
	"thumbprint_sha1" text,
	"thumbprint_sha256" text,
	"certificate_subject" text,
	"certificate_not_before" timestamp with time zone,
	"certificate_not_after" timestamp with time zone,
	"credential_fingerprint" text NOT NULL,
	"secret_expires_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "integration_tests" ADD CONSTRAINT "integration_tests_integration_id_integrations_id_fk" FOREIGN KEY ("integration_id") REFERENCES "public"."integrations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "integration_tests_lookup_idx" ON "integration_tests" USING btree ("integration_id","config_hash","id");