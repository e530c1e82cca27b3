CREATE TABLE "connectors" (
	"id" uuid PRIMARY KEY NOT NULL,
	"integration_id" uuid NOT NULL,
	"name" text NOT NULL,
	"direction" text NOT NULL,
	"primary_address" text NOT NULL,
	"enabled" boolean DEFAULT false NOT NULL,
	"folder_paths" text[],
	"folder_ids" jsonb,
	"after_processing" text,
	"send_automated_emails" boolean DEFAULT true NOT NULL,
	"test_mode_only" boolean DEFAULT false NOT NULL,
	"email_classification" boolean DEFAULT false NOT NULL,
	"sentiment_analysis" boolean DEFAULT false NOT NULL,
	"email_data_extraction" boolean DEFAULT false NOT NULL,
	"thank_you_evaluation" boolean DEFAULT false NOT NULL,
	"consecutive_failures" integer DEFAULT 0 NOT NULL,
	"disabled_reason" text,
	"disabled_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "email_routes" (
	"id" uuid PRIMARY KEY NOT NULL,
	"connector_id" uuid NOT NULL,
	"direction" text NOT NULL,
	"kind" text NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"email_address" text NOT NULL,
	"work_item_type" text,
	"process_id" text,
	"ticket_category" text,
	"rules" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"send_automated_emails" boolean DEFAULT true NOT NULL,
	"for_attention" boolean DEFAULT false NOT NULL,
	"test_mode_only" boolean DEFAULT false NOT NULL,
	"enabled" boolean DEFAULT false NOT NULL,
	"priority" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "connectors" ADD CONSTRAINT "connectors_integration_id_integrations_id_fk" FOREIGN KEY ("integration_id") REFERENCES "public"."integrations"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "email_routes" ADD CONSTRAINT "email_routes_connector_id_connectors_id_fk" FOREIGN KEY ("connector_id") REFERENCES "public"."connectors"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "connectors_address_unique" ON "connectors" USING btree ("direction","primary_address");--> statement-breakpoint
CREATE UNIQUE INDEX "email_routes_one_fallback" ON "email_routes" USING btree ("connector_id") WHERE "email_routes"."kind" = 'fallback';--> statement-breakpoint
CREATE UNIQUE INDEX "email_routes_outgoing_address" ON "email_routes" USING btree ("email_address") WHERE "email_routes"."direction" = 'outgoing';