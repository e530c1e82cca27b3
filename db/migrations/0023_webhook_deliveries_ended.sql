ALTER TABLE "webhook_deliveries" ADD COLUMN "ended_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "webhook_deliveries_ended_idx" ON "webhook_deliveries" USING btree ("ended_at") WHERE "webhook_deliveries"."state" <> 'pending';--> statement-breakpoint
UPDATE "webhook_deliveries" SET "ended_at" = coalesce("delivered_at", "created_at") WHERE "state" <> 'pending';