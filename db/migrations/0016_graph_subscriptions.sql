CREATE TABLE "graph_subscriptions" (
	"id" uuid PRIMARY KEY NOT NULL,
	"subscription_id" text NOT NULL,
	"connector_id" uuid NOT NULL,
	"folder_path" text NOT NULL,
	"integration_id" uuid NOT NULL,
	"mailbox" text NOT NULL,
	"client_state_sealed" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"renew_requested" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"renewed_at" timestamp with time zone
);
--> statement-breakpoint
CREATE UNIQUE INDEX "graph_subscriptions_subscription_unique" ON "graph_subscriptions" USING btree ("subscription_id");--> statement-breakpoint
CREATE UNIQUE INDEX "graph_subscriptions_folder_unique" ON "graph_subscriptions" USING btree ("connector_id","folder_path");