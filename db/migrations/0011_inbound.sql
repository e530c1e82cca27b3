CREATE TABLE "blocked_addresses" (
	"id" uuid PRIMARY KEY NOT NULL,
	"pattern" text NOT NULL,
	"action" text NOT NULL,
	"note" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "blocked_addresses_pattern_unique" UNIQUE("pattern")
);
--> statement-breakpoint
CREATE TABLE "inbound_dedupe_keys" (
	"scope" text NOT NULL,
	"kind" text NOT NULL,
	"hash" text NOT NULL,
	"email_id" uuid NOT NULL,
	CONSTRAINT "inbound_dedupe_keys_scope_kind_hash_pk" PRIMARY KEY("scope","kind","hash")
);
--> statement-breakpoint
CREATE TABLE "inbound_emails" (
	"id" uuid PRIMARY KEY NOT NULL,
	"connector_id" uuid NOT NULL,
	"source_format" text NOT NULL,
	"source_blob_id" uuid NOT NULL,
	"source_size" integer NOT NULL,
	"source_hash" text NOT NULL,
	"content_hash" text NOT NULL,
	"identity_hash" text,
	"internet_message_id" text,
	"in_reply_to" text,
	"references" text[] NOT NULL,
	"subject" text NOT NULL,
	"from_address" text,
	"from_name" text,
	"sender_address" text,
	"return_path" text,
	"to_addresses" text[] NOT NULL,
	"cc_addresses" text[] NOT NULL,
	"bcc_addresses" text[] NOT NULL,
	"reply_to" text[] NOT NULL,
	"importance" text NOT NULL,
	"sent_at" timestamp with time zone,
	"headers" jsonb NOT NULL,
	"text_body" text NOT NULL,
	"html_body" text,
	"attachments" jsonb NOT NULL,
	"parse_problems" text[] NOT NULL,
	"automated" jsonb,
	"suppress_automated_answer" boolean DEFAULT false NOT NULL,
	"outcome" text NOT NULL,
	"outcome_reason" text,
	"duplicate_of" uuid,
	"test_mode" boolean DEFAULT false NOT NULL,
	"steps" jsonb NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"processed_at" timestamp with time zone,
	"processing_attempts" integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "work_item_links" (
	"id" uuid PRIMARY KEY NOT NULL,
	"email_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"route_id" uuid,
	"address" text NOT NULL,
	"work_item_ref" text,
	"automated" boolean DEFAULT false NOT NULL,
	"test_mode" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"confirmed_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "outbound_messages" ADD COLUMN "bounces" jsonb DEFAULT '[]'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "inbound_dedupe_keys" ADD CONSTRAINT "inbound_dedupe_keys_email_id_inbound_emails_id_fk" FOREIGN KEY ("email_id") REFERENCES "public"."inbound_emails"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "inbound_emails" ADD CONSTRAINT "inbound_emails_connector_id_connectors_id_fk" FOREIGN KEY ("connector_id") REFERENCES "public"."connectors"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "inbound_emails" ADD CONSTRAINT "inbound_emails_source_blob_id_attachment_blobs_id_fk" FOREIGN KEY ("source_blob_id") REFERENCES "public"."attachment_blobs"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "work_item_links" ADD CONSTRAINT "work_item_links_email_id_inbound_emails_id_fk" FOREIGN KEY ("email_id") REFERENCES "public"."inbound_emails"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "work_item_links" ADD CONSTRAINT "work_item_links_route_id_email_routes_id_fk" FOREIGN KEY ("route_id") REFERENCES "public"."email_routes"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "inbound_dedupe_keys_email_idx" ON "inbound_dedupe_keys" USING btree ("email_id");--> statement-breakpoint
CREATE INDEX "inbound_emails_connector_idx" ON "inbound_emails" USING btree ("connector_id","id");--> statement-breakpoint
CREATE INDEX "inbound_emails_outcome_idx" ON "inbound_emails" USING btree ("outcome","id");--> statement-breakpoint
CREATE INDEX "inbound_emails_message_id_idx" ON "inbound_emails" USING btree ("internet_message_id");--> statement-breakpoint
CREATE INDEX "inbound_emails_received_idx" ON "inbound_emails" USING btree ("received_at") WHERE "inbound_emails"."outcome" = 'received';--> statement-breakpoint
CREATE INDEX "inbound_emails_source_blob_idx" ON "inbound_emails" USING btree ("source_blob_id");--> statement-breakpoint
CREATE UNIQUE INDEX "work_item_links_request_unique" ON "work_item_links" USING btree ("email_id","route_id") WHERE "work_item_links"."kind" = 'requested';--> statement-breakpoint
CREATE UNIQUE INDEX "work_item_links_append_unique" ON "work_item_links" USING btree ("email_id","work_item_ref") WHERE "work_item_links"."kind" = 'appended';--> statement-breakpoint
CREATE INDEX "work_item_links_email_idx" ON "work_item_links" USING btree ("email_id");--> statement-breakpoint
CREATE INDEX "work_item_links_ref_idx" ON "work_item_links" USING btree ("work_item_ref");--> statement-breakpoint
CREATE INDEX "outbound_messages_internet_message_id_idx" ON "outbound_messages" USING btree (("graph_ids" ->> 'internetMessageId'));