CREATE TABLE "mailbox_folder_syncs" (
	"id" uuid PRIMARY KEY NOT NULL,
	"connector_id" uuid NOT NULL,
	"folder_path" text NOT NULL,
	"folder_id" text NOT NULL,
	"ingest_since" timestamp with time zone NOT NULL,
	"delta_link" text,
	"next_link" text,
	"due_at" timestamp with time zone DEFAULT now() NOT NULL,
	"lease_owner" text,
	"lease_expires_at" timestamp with time zone,
	"fence" integer DEFAULT 0 NOT NULL,
	"last_synced_at" timestamp with time zone,
	"last_error" jsonb,
	"messages_taken" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "inbound_emails" ADD COLUMN "graph_message_id" text;--> statement-breakpoint
ALTER TABLE "inbound_emails" ADD COLUMN "after_action" jsonb;--> statement-breakpoint
ALTER TABLE "mailbox_folder_syncs" ADD CONSTRAINT "mailbox_folder_syncs_connector_id_connectors_id_fk" FOREIGN KEY ("connector_id") REFERENCES "public"."connectors"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "mailbox_folder_syncs_folder_unique" ON "mailbox_folder_syncs" USING btree ("connector_id","folder_path");--> statement-breakpoint
CREATE INDEX "mailbox_folder_syncs_due_idx" ON "mailbox_folder_syncs" USING btree ("due_at");--> statement-breakpoint
CREATE INDEX "inbound_emails_graph_message_idx" ON "inbound_emails" USING btree ("connector_id","graph_message_id") WHERE "inbound_emails"."graph_message_id" is not null;--> statement-breakpoint
CREATE INDEX "inbound_emails_after_action_pending_idx" ON "inbound_emails" USING btree ("connector_id","id") WHERE "inbound_emails"."after_action" ->> 'state' = 'pending';